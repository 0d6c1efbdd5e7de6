# s2s/: federation with other servers (included from Makefile.am).
sbin_PROGRAMS += s2s/hearth-s2s
s2s_hearth_s2s_SOURCES = s2s/s2s.h s2s/main.c s2s/out.c s2s/in.c
s2s_hearth_s2s_SOURCES += s2s/metrics.c s2s/ack.c
s2s_hearth_s2s_LDADD = $(COMMON_LIBS)
EXTRA_DIST += test/e2e/test_s2s.py test/e2e/test_s2s_prosody.py test/e2e/prosody_env.py test/e2e/test_s2s_robust.py \
	test/e2e/test_s2s_trust.py
