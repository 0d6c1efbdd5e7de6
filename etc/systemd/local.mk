# etc/systemd/: systemd units, sysusers.d and tmpfiles.d (included from
# Makefile.am). Paths are substituted at build time, as for tools/hearthd;
# configure --with-systemdsystemunitdir=no installs none of them.
SYSTEMD_UNITS = etc/systemd/hearth-router.service etc/systemd/hearth-sm.service \
	etc/systemd/hearth-s2s.service etc/systemd/hearth-resolver.service \
	etc/systemd/hearth-c2s@.service etc/systemd/hearth-upload.service \
	etc/systemd/hearth-proxy65.service
SYSTEMD_INPUTS = $(SYSTEMD_UNITS:=.in) etc/systemd/hearth-sysusers.conf.in \
	etc/systemd/hearth-tmpfiles.conf.in
EXTRA_DIST += $(SYSTEMD_INPUTS) etc/systemd/hearth.target etc/systemd/local.mk
CLEANFILES += $(SYSTEMD_UNITS) etc/systemd/sysusers/hearth.conf etc/systemd/tmpfiles/hearth.conf
if HAVE_SYSTEMD_UNITS
systemdsystemunit_DATA = $(SYSTEMD_UNITS) etc/systemd/hearth.target
sysusers_DATA = etc/systemd/sysusers/hearth.conf
tmpfiles_DATA = etc/systemd/tmpfiles/hearth.conf
else
# Built anyway (make all), so that the tree always checks them.
noinst_DATA = $(SYSTEMD_UNITS) etc/systemd/sysusers/hearth.conf etc/systemd/tmpfiles/hearth.conf
endif

$(SYSTEMD_UNITS): Makefile
	$(AM_V_GEN)mkdir -p etc/systemd && $(do_subst) < $(top_srcdir)/$@.in > $@.tmp && mv $@.tmp $@
etc/systemd/hearth-router.service: $(top_srcdir)/etc/systemd/hearth-router.service.in
etc/systemd/hearth-sm.service: $(top_srcdir)/etc/systemd/hearth-sm.service.in
etc/systemd/hearth-s2s.service: $(top_srcdir)/etc/systemd/hearth-s2s.service.in
etc/systemd/hearth-resolver.service: $(top_srcdir)/etc/systemd/hearth-resolver.service.in
etc/systemd/hearth-c2s@.service: $(top_srcdir)/etc/systemd/hearth-c2s@.service.in
etc/systemd/hearth-upload.service: $(top_srcdir)/etc/systemd/hearth-upload.service.in
etc/systemd/hearth-proxy65.service: $(top_srcdir)/etc/systemd/hearth-proxy65.service.in
etc/systemd/sysusers/hearth.conf: $(top_srcdir)/etc/systemd/hearth-sysusers.conf.in Makefile
	$(AM_V_GEN)mkdir -p etc/systemd/sysusers && $(do_subst) < $(top_srcdir)/etc/systemd/hearth-sysusers.conf.in > $@
etc/systemd/tmpfiles/hearth.conf: $(top_srcdir)/etc/systemd/hearth-tmpfiles.conf.in Makefile
	$(AM_V_GEN)mkdir -p etc/systemd/tmpfiles && $(do_subst) < $(top_srcdir)/etc/systemd/hearth-tmpfiles.conf.in > $@

# make install, the units, the man pages; readiness and SIGHUP.
EXTRA_DIST += test/e2e/test_install.py test/e2e/test_reload.py

# etc/logrotate/: the rotation of hearthd's log files.
logrotatedir = $(sysconfdir)/logrotate.d
logrotate_DATA = etc/logrotate/hearth
EXTRA_DIST += etc/logrotate/hearth.in
CLEANFILES += etc/logrotate/hearth
etc/logrotate/hearth: $(top_srcdir)/etc/logrotate/hearth.in Makefile
	$(AM_V_GEN)mkdir -p etc/logrotate && $(do_subst) < $(top_srcdir)/etc/logrotate/hearth.in > $@
