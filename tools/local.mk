# tools/: the admin command (included from Makefile.am).
bin_PROGRAMS += tools/hearthctl
tools_hearthctl_SOURCES = tools/hearthctl.c
tools_hearthctl_SOURCES += tools/ctl_check.h tools/ctl_check.c tools/ctl_check_tls.c tools/ctl_check_net.c
tools_hearthctl_SOURCES += tools/hearthctl.h tools/ctl_pie.h tools/ctl_pie.c tools/ctl_pie_export.c \
	tools/ctl_pie_import.c tools/ctl_pie_check.c
tools_hearthctl_SOURCES += tools/ctl_account.c tools/ctl_link.c
tools_hearthctl_SOURCES += tools/ctl_invite.c tools/ctl_uploads.c
tools_hearthctl_LDADD = $(STORAGE_LIBS) $(COMMON_LIBS)
tools_hearthctl_LDADD += $(CARES_LIBS)
EXTRA_DIST += test/e2e/test_hearthctl_check.py
EXTRA_DIST += test/e2e/test_hearthctl.py test/e2e/test_sm_iq.py
EXTRA_DIST += test/e2e/test_migrate.py
