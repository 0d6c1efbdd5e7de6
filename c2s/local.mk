# c2s/: client connections (included from Makefile.am).
sbin_PROGRAMS += c2s/hearth-c2s
c2s_hearth_c2s_SOURCES = c2s/c2s.h c2s/main.c c2s/client.c c2s/auth.c c2s/register.c \
	c2s/session.c c2s/hold.c c2s/addr.c c2s/limits.c c2s/saslmsg.c
c2s_hearth_c2s_SOURCES += c2s/metrics.c
c2s_hearth_c2s_SOURCES += c2s/preauth.c
c2s_hearth_c2s_LDADD = $(STORAGE_LIBS) $(COMMON_LIBS)

EXTRA_DIST += test/e2e/xmpp_client.py test/e2e/test_c2s.py test/e2e/test_c2s_limits.py

# A second real client library for the login path (test_c2s_strophe.py).
EXTRA_DIST += test/e2e/strophe-login.c test/e2e/test_c2s_strophe.py
if HAVE_STROPHE
check_PROGRAMS += test/e2e/strophe-login
test_e2e_strophe_login_CFLAGS = $(AM_CFLAGS) $(STROPHE_CFLAGS)
test_e2e_strophe_login_LDADD = $(STROPHE_LIBS)
endif

check_PROGRAMS += test/unit/test_c2s_saslmsg
test_unit_test_c2s_saslmsg_SOURCES = test/unit/test_c2s_saslmsg.c c2s/saslmsg.c
TESTS += test/unit/test_c2s_saslmsg

check_PROGRAMS += test/unit/test_c2s_limits
test_unit_test_c2s_limits_SOURCES = test/unit/test_c2s_limits.c c2s/addr.c c2s/limits.c
test_unit_test_c2s_limits_LDADD = $(COMMON_LIBS)
TESTS += test/unit/test_c2s_limits
EXTRA_DIST += test/e2e/test_invite.py
