/* test_c2s_saslmsg — c2s reads the user from a client's first SASL message
 * (c2s/saslmsg.c): SCRAM GS2 headers, saslname escapes, PLAIN's three
 * parts, and the malformed inputs a peer may send. */
#include <string.h>

#include "../../c2s/c2s.h"
#include "tap.h"

static int scram(const char *m, sasl_first_t *out)
{
    return sasl_parse_scram_first(m, strlen(m), out);
}

static void scram_without_binding(void)
{
    sasl_first_t f;
    is_int(scram("n,,n=alice,r=abc", &f), 0, "scram: n,, parses");
    is_str(f.user, "alice", "scram: user");
    is_int(f.flag, 'n', "scram: flag n");
    is_str(f.authzid, "", "scram: no authzid");
    is_int(scram("y,,n=bob,r=xyz", &f), 0, "scram: y,, parses");
    is_int(f.flag, 'y', "scram: flag y");
}

static void scram_with_binding_and_authzid(void)
{
    sasl_first_t f;
    is_int(scram("p=tls-exporter,a=alice@localhost,n=alice,r=n0nce", &f), 0, "scram: p= parses");
    is_int(f.flag, 'p', "scram: flag p");
    is_str(f.cb_type, "tls-exporter", "scram: binding type");
    is_str(f.authzid, "alice@localhost", "scram: authzid");
}

static void scram_escapes(void)
{
    sasl_first_t f;
    is_int(scram("n,,n=a=2Cb=3Dc,r=1", &f), 0, "scram: escaped name parses");
    is_str(f.user, "a,b=c", "scram: =2C and =3D unescaped");
    ok(scram("n,,n=a=2,r=1", &f) < 0, "scram: a cut escape is malformed");
    ok(scram("n,,n=a=41,r=1", &f) < 0, "scram: an unknown escape is malformed");
}

static void scram_malformed(void)
{
    sasl_first_t f;
    const char *bad[] = {"",
                         "n",
                         "n,",
                         "n,,",
                         "n,,n=",
                         "n,,n=alice",
                         "n,,n=alice,",
                         "n,,n=,r=1",
                         "x,,n=alice,r=1",
                         "p=,,n=alice,r=1",
                         "n,b=x,n=alice,r=1",
                         "n,,m=x,n=alice,r=1",
                         "n,,n=alice,r=",
                         "p=a-binding-type-far-too-long,,n=a,r=1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ok(scram(bad[i], &f) < 0, "scram: '%s' is malformed", bad[i]);
    const char nul[] = "n,,n=al\0ice,r=1";
    ok(sasl_parse_scram_first(nul, sizeof nul - 1, &f) < 0, "scram: a NUL inside is malformed");
}

static int plain(const char *m, size_t len, sasl_first_t *out, const char **pw)
{
    return sasl_parse_plain(m, len, out, pw);
}

static void plain_parts(void)
{
    sasl_first_t f;
    const char *pw;
    const char m[] = "\0alice\0secret";
    is_int(plain(m, sizeof m - 1, &f, &pw), 0, "plain: parses");
    is_str(f.user, "alice", "plain: user");
    is_str(f.authzid, "", "plain: no authzid");
    is_str(pw, "secret", "plain: password");
    const char az[] = "alice@localhost\0alice\0pw";
    is_int(plain(az, sizeof az - 1, &f, &pw), 0, "plain: with authzid parses");
    is_str(f.authzid, "alice@localhost", "plain: authzid");
}

static void plain_malformed(void)
{
    sasl_first_t f;
    const char *pw;
    const char no_user[] = "\0\0pw", no_pw[] = "\0alice\0", one_nul[] = "alice\0pw",
               extra[] = "\0alice\0pw\0more";
    ok(plain(no_user, sizeof no_user - 1, &f, &pw) < 0, "plain: empty user is malformed");
    ok(plain(no_pw, sizeof no_pw - 1, &f, &pw) < 0, "plain: empty password is malformed");
    ok(plain(one_nul, sizeof one_nul - 1, &f, &pw) < 0, "plain: two parts are malformed");
    ok(plain(extra, sizeof extra - 1, &f, &pw) < 0, "plain: four parts are malformed");
}

int main(void)
{
    scram_without_binding();
    scram_with_binding_and_authzid();
    scram_escapes();
    scram_malformed();
    plain_parts();
    plain_malformed();
    return done_testing();
}
