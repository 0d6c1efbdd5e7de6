# storage/: the storage library (included from Makefile.am).
noinst_LIBRARIES += libhearth-storage.a
libhearth_storage_a_SOURCES = storage/storage.h storage/storage.c
STORAGE_LIBS = libhearth-storage.a $(SQLITE_LIBS) $(PQ_LIBS)
