# c2s/: client connections (included from Makefile.am).
