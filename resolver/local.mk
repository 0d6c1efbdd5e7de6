# resolver/: DNS for s2s (included from Makefile.am).
sbin_PROGRAMS += resolver/hearth-resolver
resolver_hearth_resolver_SOURCES = resolver/resolver.h resolver/main.c resolver/resolve.c
resolver_hearth_resolver_LDADD = $(COMMON_LIBS) $(CARES_LIBS)
EXTRA_DIST += test/e2e/test_resolver.py
