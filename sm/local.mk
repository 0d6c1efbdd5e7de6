# sm/: the session manager (included from Makefile.am).
EXTRA_DIST += sm/sm.h
