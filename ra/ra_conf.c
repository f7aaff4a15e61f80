/* ra_conf: the settings-table engine shared by stampeded and
 * stampede-control (see ra_conf.h): lookup by name, typed and bounded
 * assignment, defaults, the INI reader (libinih), the two passes over argv,
 * --help and --dump-config. It reaches a program's fields only through the
 * table's offsets. Thread: startup only. */
#include "ra/ra_conf.h"

#include <errno.h>
#include <ini.h>
#include <stdlib.h>
#include <string.h>

#define RA_CONF_NAME_MAX 64 /* longer names and flags are unknown */

static const char *const ra_conf_err_text[RA_CONF__COUNT] = {
    [RA_CONF_OK] = "ok", [RA_CONF_EXIT_OK] = "exit",
    [RA_CONF_E_USAGE] = "usage error", [RA_CONF_E_VALUE] = "invalid value",
    [RA_CONF_E_FILE] = "config file error",
};

const char *ra_conf_err_str(ra_conf_err_t e) {
    return (unsigned)e < RA_CONF__COUNT ? ra_conf_err_text[e] : "unknown";
}

/* ra_conf_find returns the setting called `name` ('-' read as '_'), or NULL. */
static const ra_conf_setting_t *ra_conf_find(const ra_conf_spec_t *spec, const char *name) {
    char key[RA_CONF_NAME_MAX];
    size_t n = strlen(name);
    if (n >= sizeof(key)) return NULL;
    for (size_t i = 0; i <= n; i++) key[i] = name[i] == '-' ? '_' : name[i];
    for (size_t i = 0; i < spec->n_settings; i++)
        if (strcmp(spec->settings[i].name, key) == 0) return &spec->settings[i];
    return NULL;
}

/* ra_conf_default_text is `s`'s default as text (its fallback if NULL). */
static const char *ra_conf_default_text(const ra_conf_setting_t *s) {
    if (s->def) return s->def;
    return s->type == RA_CONF_STR ? "" : s->type == RA_CONF_UINT ? "0" : "false";
}

static ra_conf_err_t ra_conf_apply_bool(const ra_conf_setting_t *s, bool *field, const char *v,
                                        char *why, size_t why_len) {
    if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on") || !strcmp(v, "1")) {
        *field = true;
    } else if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off") || !strcmp(v, "0")) {
        *field = false;
    } else {
        snprintf(why, why_len, "%s: '%s' is not true/false", s->name, v);
        return RA_CONF_E_VALUE;
    }
    return RA_CONF_OK;
}

/* ra_conf_apply sets the field of `s` in `cfg` from the text `v`. */
static ra_conf_err_t ra_conf_apply(void *cfg, const ra_conf_setting_t *s, const char *v,
                                   char *why, size_t why_len) {
    void *field = (char *)cfg + s->off;
    switch (s->type) {
    case RA_CONF_STR: {
        char *copy = strdup(v);
        if (!copy) {
            snprintf(why, why_len, "%s: out of memory", s->name);
            return RA_CONF_E_VALUE;
        }
        free(*(char **)field);
        *(char **)field = copy;
        return RA_CONF_OK;
    }
    case RA_CONF_UINT: {
        char *end;
        errno = 0;
        unsigned long long x = strtoull(v, &end, 10);
        if (errno || end == v || *end || v[0] == '-' || x < s->min || x > s->max) {
            snprintf(why, why_len, "%s: '%s' is not a number in %u..%u", s->name, v, s->min, s->max);
            return RA_CONF_E_VALUE;
        }
        *(uint32_t *)field = (uint32_t)x;
        return RA_CONF_OK;
    }
    case RA_CONF_BOOL:
        return ra_conf_apply_bool(s, field, v, why, why_len);
    }
    snprintf(why, why_len, "%s: unknown setting type", s->name);
    return RA_CONF_E_VALUE;
}

ra_conf_err_t ra_conf_defaults(const ra_conf_spec_t *spec, void *cfg, char *why, size_t why_len) {
    for (size_t i = 0; i < spec->n_settings; i++) {
        const ra_conf_setting_t *s = &spec->settings[i];
        ra_conf_err_t e = ra_conf_apply(cfg, s, ra_conf_default_text(s), why, why_len);
        if (e) return e;
    }
    return RA_CONF_OK;
}

ra_conf_err_t ra_conf_set(const ra_conf_spec_t *spec, void *cfg, const char *name, const char *value,
                          char *why, size_t why_len) {
    const ra_conf_setting_t *s = ra_conf_find(spec, name);
    if (!s) {
        snprintf(why, why_len, "unknown setting '%s' (see --help)", name);
        return RA_CONF_E_USAGE;
    }
    return ra_conf_apply(cfg, s, value, why, why_len);
}

typedef struct {
    const ra_conf_spec_t *spec;
    void *cfg;
    char *why;
    size_t why_len;
    ra_conf_err_t err;
} ra_conf_ini_ctx_t;

/* ra_conf_ini_handler is libinih's callback: 1 goes on, 0 stops at this line. */
static int ra_conf_ini_handler(void *user, const char *section, const char *name, const char *value) {
    ra_conf_ini_ctx_t *ctx = user;
    if (section[0] && strcmp(section, ctx->spec->section) != 0) return 1; /* other programs' sections */
    ra_conf_err_t e = ra_conf_set(ctx->spec, ctx->cfg, name, value, ctx->why, ctx->why_len);
    if (e != RA_CONF_OK) {
        ctx->err = e;
        return 0;
    }
    return 1;
}

ra_conf_err_t ra_conf_load_file(const ra_conf_spec_t *spec, void *cfg, const char *path,
                                char *why, size_t why_len) {
    ra_conf_ini_ctx_t ctx = {spec, cfg, why, why_len, RA_CONF_OK};
    int r = ini_parse(path, ra_conf_ini_handler, &ctx);
    if (r < 0) {
        snprintf(why, why_len, "cannot read config file %s: %s", path, strerror(errno));
        return RA_CONF_E_FILE;
    }
    if (ctx.err) return ctx.err;
    if (r > 0) {
        snprintf(why, why_len, "%s:%d: malformed line", path, r);
        return RA_CONF_E_FILE;
    }
    return RA_CONF_OK;
}

/* flag_value returns the value of argv[*i] ("--x=v" or "--x v"), advancing
 * *i past a separate value; NULL if there is none. */
static const char *flag_value(int argc, char **argv, int *i, const char *eq) {
    if (eq) return eq + 1;
    if (*i + 1 >= argc) return NULL;
    return argv[++*i];
}

ra_conf_err_t ra_conf_early(const ra_conf_spec_t *spec, void *cfg, int argc, char **argv, FILE *out,
                            char **config_file, char *why, size_t why_len) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            ra_conf_help(spec, out, argv[0]);
            return RA_CONF_EXIT_OK;
        }
        if (!strcmp(a, "--version")) {
            fprintf(out, "%s %s\n", spec->prog, STAMPEDE_VERSION);
            return RA_CONF_EXIT_OK;
        }
        if (!strncmp(a, "--config", 8) && (a[8] == 0 || a[8] == '=')) {
            const char *v = flag_value(argc, argv, &i, a[8] == '=' ? a + 8 : NULL);
            if (!v) {
                snprintf(why, why_len, "--config needs a file name");
                return RA_CONF_E_USAGE;
            }
            free(*config_file);
            *config_file = strdup(v);
        } else if (spec->pair_values_early && !strncmp(a, "--", 2) && a[2] && !strchr(a, '=') &&
                   strcmp(a, "--dump-config") != 0) {
            i++; /* a setting's separate value */
        }
    }
    if (!*config_file) return RA_CONF_OK;
    return ra_conf_load_file(spec, cfg, *config_file, why, why_len);
}

/* ra_conf_positional files the non-flag argument `a` in `rest`. */
static ra_conf_err_t ra_conf_positional(ra_conf_rest_t *rest, const char *a, char *why, size_t why_len) {
    if (!rest || rest->n >= rest->cap) {
        snprintf(why, why_len, "unexpected argument '%s' (see --help)", a);
        return RA_CONF_E_USAGE;
    }
    rest->v[rest->n++] = a;
    return RA_CONF_OK;
}

ra_conf_err_t ra_conf_flags(const ra_conf_spec_t *spec, void *cfg, int argc, char **argv,
                            ra_conf_rest_t *rest, bool *dump, char *why, size_t why_len) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        ra_conf_err_t e;
        if (strncmp(a, "--", 2) != 0 || (!a[2] && rest)) {
            e = ra_conf_positional(rest, a, why, why_len);
            if (e) return e;
            continue;
        }
        char name[RA_CONF_NAME_MAX];
        const char *eq = strchr(a, '=');
        size_t n = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (n >= sizeof(name)) {
            snprintf(why, why_len, "unknown flag '%s' (see --help)", a);
            return RA_CONF_E_USAGE;
        }
        memcpy(name, a + 2, n);
        name[n] = 0;
        if (!strcmp(name, "dump-config")) {
            if (dump) *dump = true;
            continue;
        }
        if (spec->refused_flag && !strcmp(name, spec->refused_flag)) {
            snprintf(why, why_len, "%s", spec->refused_why);
            return RA_CONF_E_USAGE;
        }
        bool config = !strcmp(name, "config");
        if (!config && !ra_conf_find(spec, name)) {
            snprintf(why, why_len, "unknown flag '--%s' (see --help)", name);
            return RA_CONF_E_USAGE;
        }
        const char *v = flag_value(argc, argv, &i, eq);
        if (config) continue; /* read by ra_conf_early */
        if (!v) {
            snprintf(why, why_len, "--%s needs a value", name);
            return RA_CONF_E_USAGE;
        }
        e = ra_conf_set(spec, cfg, name, v, why, why_len);
        if (e) return e;
    }
    return RA_CONF_OK;
}

void ra_conf_help(const ra_conf_spec_t *spec, FILE *out, const char *argv0) {
    fprintf(out, "Usage: %s %s\n", argv0, spec->synopsis);
    fputs(spec->about, out);
    fprintf(out,
            "Every setting below can be given as a flag (--name VALUE, '-' or '_') or in\n"
            "the config file as 'name = value' (top level or section [%s]).\n"
            "Flags override the file, the file overrides the defaults.\n\n"
            "  --config FILE          read settings from FILE (INI syntax)\n"
            "  --help                 print this help and exit\n"
            "  --version              print the version and exit\n"
            "  --dump-config          print every setting as a commented config file\n"
            "                         %s and exit\n",
            spec->section, spec->dump_means);
    for (size_t i = 0; i < spec->n_settings; i++) {
        const ra_conf_setting_t *s = &spec->settings[i];
        char flag[RA_CONF_NAME_MAX + 2];
        snprintf(flag, sizeof(flag), "--%s", s->name);
        for (char *p = flag + 2; *p; p++)
            if (*p == '_') *p = '-';
        const char *arg = s->type == RA_CONF_UINT ? " N" : s->type == RA_CONF_BOOL ? " BOOL" : " VALUE";
        fprintf(out, "  %s%s\n      %s", flag, arg, s->help);
        if (s->def && s->def[0]) fprintf(out, " [default: %s]", s->def);
        fputc('\n', out);
    }
}

/* ra_conf_value_text is the value of `s` in `cfg` as text (`buf` holds a
 * number), or its default as written if `cfg` is NULL. */
static const char *ra_conf_value_text(const ra_conf_setting_t *s, const void *cfg, char *buf,
                                      size_t buf_len) {
    if (!cfg) return ra_conf_default_text(s);
    const void *field = (const char *)cfg + s->off;
    switch (s->type) {
    case RA_CONF_STR: {
        const char *v = *(char *const *)field;
        return v ? v : "";
    }
    case RA_CONF_UINT:
        snprintf(buf, buf_len, "%u", *(const uint32_t *)field);
        return buf;
    case RA_CONF_BOOL:
        return *(const bool *)field ? "true" : "false";
    }
    return "";
}

void ra_conf_dump(const ra_conf_spec_t *spec, FILE *out, const void *cfg) {
    fprintf(out, "%s[%s]\n", spec->dump_header, spec->section);
    for (size_t i = 0; i < spec->n_settings; i++) {
        const ra_conf_setting_t *s = &spec->settings[i];
        char num[16];
        const char *v = ra_conf_value_text(s, cfg, num, sizeof(num));
        bool unset = s->type == RA_CONF_STR && !v[0];
        fprintf(out, "\n# %s\n%s%s = %s\n", s->help, unset ? "# " : "", s->name, v);
    }
}

void ra_conf_free(const ra_conf_spec_t *spec, void *cfg) {
    for (size_t i = 0; i < spec->n_settings; i++)
        if (spec->settings[i].type == RA_CONF_STR) {
            char **f = (char **)((char *)cfg + spec->settings[i].off);
            free(*f);
            *f = NULL;
        }
}
