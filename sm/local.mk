# sm/: the session manager (included from Makefile.am).
EXTRA_DIST += sm/sm.h
sbin_PROGRAMS += sm/hearth-sm
sm_hearth_sm_SOURCES = sm/sm.h sm/core.h sm/main.c sm/core.c sm/session.c sm/hold.c sm/ack.c sm/deliver.c \
	sm/modules.c sm/roster.c sm/roster.h \
	sm/mod_presence.c sm/mod_roster.c sm/mod_offline.c
sm_hearth_sm_SOURCES += sm/mod_disco.c sm/mod_vcard.c sm/mod_private.c sm/mod_version.c \
	sm/mod_time.c sm/mod_last.c sm/mod_ping.c sm/mod_blocking.c sm/mod_register.c sm/mod_admin.c
sm_hearth_sm_SOURCES += sm/metrics.c sm/account.c sm/http_api.c
sm_hearth_sm_SOURCES += sm/adhoc.h sm/mod_adhoc.c sm/mod_admin_commands.c sm/mod_invite.c sm/mod_carbons.c sm/mod_extdisco.c
sm_hearth_sm_LDADD = $(STORAGE_LIBS) $(COMMON_LIBS)
EXTRA_DIST += test/e2e/test_sm_session.py test/e2e/test_sm_core.py test/e2e/test_sm_robust.py
EXTRA_DIST += test/e2e/test_adhoc.py test/e2e/test_survive.py test/e2e/test_carbons.py test/e2e/test_extdisco.py \
	test/e2e/test_jingle.py
