/* ra_conf: the settings-table engine of stampeded (dataplane/dp_config) and
 * stampede-control (control/ctl_config). A program describes its settings in
 * one const table of ra_conf_setting_t over its own config struct (name,
 * type, field offset, default, bounds, help) and an ra_conf_spec_t around it;
 * the engine derives from them the INI config file reader (libinih), the
 * command-line flags (--name VALUE or --name=VALUE, '-' or '_'), --help and
 * --dump-config. Precedence: default < config file < flag.
 * What stays in the program: the table, checks across settings, positional
 * sub-commands, the mapping to its own error enum and exit codes.
 * Why in ra/: ra_base links neither BoringSSL nor OpenSSL, and both programs
 * link it (stampede-control must not load BoringSSL, stampeded not OpenSSL).
 * Thread: startup only. The engine owns nothing: a string setting's field is
 * a heap copy owned by the config struct, released with ra_conf_free. */
#ifndef RA_CONF_H
#define RA_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The field a setting's `off` points at: RA_CONF_STR a `char *` (heap copy,
 * never NULL once defaults are applied), RA_CONF_UINT a `uint32_t` (decimal,
 * within min..max), RA_CONF_BOOL a `bool` (true/yes/on/1, false/no/off/0). */
typedef enum { RA_CONF_STR, RA_CONF_UINT, RA_CONF_BOOL } ra_conf_type_t;

typedef struct {
    const char *name;     /* file key; the flag is --name, '-' may stand for '_' */
    ra_conf_type_t type;
    size_t off;           /* offsetof the field in the program's config struct */
    const char *def;      /* default as text; NULL: "" (STR), 0 (UINT), false (BOOL) */
    uint32_t min, max;    /* bounds for RA_CONF_UINT */
    const char *help;     /* one line; --help and --dump-config print it */
} ra_conf_setting_t;

/* ra_conf_spec_t: one program's table and the text around it. */
typedef struct {
    const char *prog;      /* "stampeded": --version prints "PROG VERSION" */
    const char *section;   /* INI section read besides the top level; others are skipped */
    const ra_conf_setting_t *settings;
    size_t n_settings;
    /* --help prints "Usage: ARGV0 SYNOPSIS\n", `about`, the flags common to
     * every program (--config, --help, --version, --dump-config, whose effect
     * `dump_means` completes, e.g. "(the built-in defaults)"), then the table. */
    const char *synopsis;
    const char *about;
    const char *dump_means;
    /* --dump-config prints `dump_header` (comment lines), "[SECTION]", then
     * each setting as "# help" and "name = value" ("# name = " if empty). */
    const char *dump_header;
    /* pair_values_early: ra_conf_early reads "--name VALUE" as a pair, as
     * ra_conf_flags does, so a VALUE is never taken for --help, --version or
     * --config (stampede-control); false: it looks at each argument alone
     * (stampeded). */
    bool pair_values_early;
    /* refused_flag: a name refused as a flag with the message refused_why
     * (stampede-control: "password", which only a file may hold); NULL: none. */
    const char *refused_flag;
    const char *refused_why;
} ra_conf_spec_t;

typedef enum {
    RA_CONF_OK = 0,
    RA_CONF_EXIT_OK,  /* --help or --version printed: exit 0 */
    RA_CONF_E_USAGE,  /* unknown setting or flag, missing value, stray argument */
    RA_CONF_E_VALUE,  /* value out of bounds or of the wrong type; out of memory */
    RA_CONF_E_FILE,   /* config file unreadable or malformed */
    RA_CONF__COUNT
} ra_conf_err_t;

/* ra_conf_err_str names `e` ("unknown" if out of range). Thread: any thread. */
const char *ra_conf_err_str(ra_conf_err_t e);

/* ra_conf_rest_t: where ra_conf_flags puts positional arguments (pointers
 * into argv, in order): v[0..n), at most cap of them. */
typedef struct {
    const char **v;
    size_t cap;
    size_t n;
} ra_conf_rest_t;

/* ra_conf_defaults sets every setting of `cfg` to its default.
 * `cfg` must be zeroed, or hold strings set by this engine (they are freed).
 * Returns RA_CONF_OK, or the error of a default the table got wrong, or
 * RA_CONF_E_VALUE when out of memory, with a cause in `why`. */
ra_conf_err_t ra_conf_defaults(const ra_conf_spec_t *spec, void *cfg, char *why, size_t why_len);

/* ra_conf_set sets the setting `name` ('-' or '_') of `cfg` from text, as
 * written in the file or after the flag. A string is copied (the old one
 * freed); a number must be decimal within the setting's bounds.
 * Returns RA_CONF_OK; RA_CONF_E_USAGE for an unknown name or RA_CONF_E_VALUE
 * for a bad value, with a cause naming the setting in `why` (`cfg` is then
 * unchanged). */
ra_conf_err_t ra_conf_set(const ra_conf_spec_t *spec, void *cfg, const char *name, const char *value,
                          char *why, size_t why_len);

/* ra_conf_load_file reads the INI file `path` into `cfg`: keys at the top
 * level and in section [spec->section]; other sections are skipped (other
 * programs'). Stops at the first bad line.
 * Returns RA_CONF_OK; RA_CONF_E_FILE if unreadable or a line is malformed,
 * else ra_conf_set's error for the first bad setting, with a cause in `why`. */
ra_conf_err_t ra_conf_load_file(const ra_conf_spec_t *spec, void *cfg, const char *path,
                                char *why, size_t why_len);

/* ra_conf_early is the first pass over argv (argv[0] is the program): --help
 * or -h prints ra_conf_help to `out`, --version prints "PROG VERSION" to
 * `out` (both: RA_CONF_EXIT_OK at once); --config FILE or --config=FILE
 * (the last one wins) replaces *config_file with a heap copy (the caller
 * frees it), and that file is then read with ra_conf_load_file. Every other
 * argument is left to ra_conf_flags.
 * Returns RA_CONF_OK, RA_CONF_EXIT_OK, or an error with a cause in `why`. */
ra_conf_err_t ra_conf_early(const ra_conf_spec_t *spec, void *cfg, int argc, char **argv, FILE *out,
                            char **config_file, char *why, size_t why_len);

/* ra_conf_flags is the second pass: it applies every setting flag of argv to
 * `cfg` in order (so they override the file). --config and its value are
 * skipped; --dump-config (or --dump-config=X) sets *dump (if `dump` is not
 * NULL). Arguments not starting with "--" are positional: appended to `rest`;
 * a bare "--" is positional too when `rest` is given (without, it is an
 * unknown flag). A positional argument with no room in `rest` (or no `rest`)
 * is an error.
 * Returns RA_CONF_OK or an error with a cause in `why` (the flags before it
 * are applied). */
ra_conf_err_t ra_conf_flags(const ra_conf_spec_t *spec, void *cfg, int argc, char **argv,
                            ra_conf_rest_t *rest, bool *dump, char *why, size_t why_len);

/* ra_conf_help prints the usage text (see ra_conf_spec_t) to `out`, with
 * `argv0` as the program's name. Each setting shows its flag, its argument
 * (N, BOOL or VALUE), its help and its default, if not empty. */
void ra_conf_help(const ra_conf_spec_t *spec, FILE *out, const char *argv0);

/* ra_conf_dump prints every setting as a commented INI file to `out`: the
 * values of `cfg`, or with `cfg` NULL the table's defaults as written. */
void ra_conf_dump(const ra_conf_spec_t *spec, FILE *out, const void *cfg);

/* ra_conf_free frees the string settings of `cfg` and sets them to NULL.
 * Safe on a zeroed struct and twice. This function can't fail. */
void ra_conf_free(const ra_conf_spec_t *spec, void *cfg);

#endif
