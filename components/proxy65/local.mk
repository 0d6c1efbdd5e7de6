# components/proxy65/: the XEP-0065 SOCKS5 bytestreams proxy (included from Makefile.am).
sbin_PROGRAMS += components/proxy65/hearth-proxy65
components_proxy65_hearth_proxy65_SOURCES = components/proxy65/proxy65.h \
	components/proxy65/main.c components/proxy65/iq.c components/proxy65/socks5.c \
	components/proxy65/relay.c
components_proxy65_hearth_proxy65_LDADD = $(COMMON_LIBS)
EXTRA_DIST += test/e2e/test_proxy65.py test/bench/run-proxy65-bench
