# components/upload/: HTTP file upload, XEP-0363 (included from Makefile.am).
sbin_PROGRAMS += components/upload/hearth-upload
components_upload_hearth_upload_SOURCES = components/upload/upload.h components/upload/main.c \
	components/upload/slot.c components/upload/files.c components/upload/sweep.c
components_upload_hearth_upload_LDADD = $(STORAGE_LIBS) $(COMMON_LIBS)
EXTRA_DIST += test/e2e/test_upload.py
