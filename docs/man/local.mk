# docs/man/: the manual pages (included from Makefile.am). Paths are
# substituted at build time; hearth.xml.5 is its hand-written head plus the
# SETTINGS section that hearth-settings-man prints from the settings table,
# so it never drifts from the code.
MAN_PAGES = docs/man/hearth-router.8 docs/man/hearth-c2s.8 docs/man/hearth-sm.8 \
	docs/man/hearth-s2s.8 docs/man/hearth-resolver.8 docs/man/hearthd.8 docs/man/hearthctl.8 \
	docs/man/hearth-upload.8 docs/man/hearth-proxy65.8
man_MANS = $(MAN_PAGES) docs/man/hearth.xml.5
EXTRA_DIST += $(MAN_PAGES:=.in) docs/man/hearth.xml.5.in docs/man/local.mk
CLEANFILES += $(man_MANS)

noinst_PROGRAMS = docs/man/hearth-settings-man
docs_man_hearth_settings_man_SOURCES = docs/man/settings-man.c common/settings.c

$(MAN_PAGES): Makefile
	$(AM_V_GEN)mkdir -p docs/man && $(do_subst) < $(top_srcdir)/$@.in > $@.tmp && mv $@.tmp $@
docs/man/hearth-router.8: $(top_srcdir)/docs/man/hearth-router.8.in
docs/man/hearth-c2s.8: $(top_srcdir)/docs/man/hearth-c2s.8.in
docs/man/hearth-sm.8: $(top_srcdir)/docs/man/hearth-sm.8.in
docs/man/hearth-s2s.8: $(top_srcdir)/docs/man/hearth-s2s.8.in
docs/man/hearth-resolver.8: $(top_srcdir)/docs/man/hearth-resolver.8.in
docs/man/hearthd.8: $(top_srcdir)/docs/man/hearthd.8.in
docs/man/hearthctl.8: $(top_srcdir)/docs/man/hearthctl.8.in
docs/man/hearth-upload.8: $(top_srcdir)/docs/man/hearth-upload.8.in
docs/man/hearth-proxy65.8: $(top_srcdir)/docs/man/hearth-proxy65.8.in
docs/man/hearth.xml.5: $(top_srcdir)/docs/man/hearth.xml.5.in docs/man/hearth-settings-man$(EXEEXT) Makefile
	$(AM_V_GEN)mkdir -p docs/man && { $(do_subst) < $(top_srcdir)/docs/man/hearth.xml.5.in && \
	  docs/man/hearth-settings-man$(EXEEXT); } > $@.tmp && mv $@.tmp $@
