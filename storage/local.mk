# storage/: the storage library (included from Makefile.am).
noinst_LIBRARIES += libhearth-storage.a
libhearth_storage_a_SOURCES = storage/storage.h storage/storage.c storage/auth.c storage/driver.h \
	storage/sqlite.c storage/pgsql.c
libhearth_storage_a_SOURCES += storage/schema.c
libhearth_storage_a_SOURCES += storage/token.c
nodist_libhearth_storage_a_SOURCES = storage/migrations.c
STORAGE_LIBS = libhearth-storage.a $(SQLITE_LIBS) $(PQ_LIBS)

# The migrations, in version order per driver, and the tables that
# storage_delete_owner empties: embedded into migrations.c at build time.
STORAGE_SQL = \
	storage/sql/sqlite/001-initial.sql \
	storage/sql/pgsql/001-initial.sql \
	storage/sql/sqlite/002-accounts.sql \
	storage/sql/pgsql/002-accounts.sql \
	storage/sql/sqlite/003-invitations.sql \
	storage/sql/pgsql/003-invitations.sql \
	storage/sql/sqlite/004-uploads.sql \
	storage/sql/pgsql/004-uploads.sql
storage/migrations.c: $(top_srcdir)/storage/embed-sql.sh $(top_srcdir)/storage/sql/owner-tables \
		$(STORAGE_SQL)
	$(AM_V_GEN)mkdir -p storage && files= && \
	for f in $(STORAGE_SQL); do files="$$files $(top_srcdir)/$$f"; done && \
	$(SHELL) $(top_srcdir)/storage/embed-sql.sh $(top_srcdir)/storage/sql/owner-tables \
		$$files > $@.tmp && mv $@.tmp $@
CLEANFILES += storage/migrations.c
EXTRA_DIST += storage/embed-sql.sh storage/sql/owner-tables $(STORAGE_SQL) test/pg-cluster
EXTRA_DIST += test/e2e/test_storage_faults.py docs/reliability.md

check_PROGRAMS += test/unit/test_storage
test_unit_test_storage_LDADD = $(STORAGE_LIBS) $(COMMON_LIBS)
TESTS += test/unit/test_storage
