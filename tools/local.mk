# tools/: the admin command (included from Makefile.am).
bin_PROGRAMS += tools/hearthctl
tools_hearthctl_SOURCES = tools/hearthctl.c
tools_hearthctl_SOURCES += tools/hearthctl.h tools/ctl_account.c
tools_hearthctl_SOURCES += tools/ctl_invite.c
tools_hearthctl_LDADD = $(STORAGE_LIBS) $(COMMON_LIBS)
EXTRA_DIST += test/e2e/test_hearthctl.py test/e2e/test_sm_iq.py
