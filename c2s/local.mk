# c2s/: client connections (included from Makefile.am).
EXTRA_DIST += test/e2e/xmpp_client.py
