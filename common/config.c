/*
 * The VDDK-style configuration file: name=value lines, whole-line #
 * comments, optional double quotes around a value. Values may contain '#'
 * (passwords, thumbprints), so only a line whose first non-blank character
 * is '#' is a comment.
 */
#include "common/common.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ORIGIN_COMMAND_LINE "command line"

/* One key with its value and origin, held in a single allocation. */
struct config_entry {
	char *value;
	char *origin;
	char key[];
};

/*
 * Entries are kept sorted by key for binary search. A fixed array of
 * FY_CONFIG_MAX_ENTRIES pointers (8 KiB) means inserting never allocates,
 * which lets fy_config_parse merge a parsed file all-or-nothing.
 */
struct fy_config {
	size_t n;
	struct config_entry *entries[FY_CONFIG_MAX_ENTRIES];
};

struct fy_config *fy_config_new(void)
{
	struct fy_config *cfg = calloc(1, sizeof(*cfg));

	if (!cfg)
		fy_err_set(-ENOMEM, "out of memory");
	return cfg;
}

void fy_config_free(struct fy_config *cfg)
{
	size_t i;

	if (!cfg)
		return;
	for (i = 0; i < cfg->n; i++)
		free(cfg->entries[i]);
	free(cfg);
}

static struct config_entry *entry_new(const char *key, size_t klen,
				      const char *value, size_t vlen,
				      const char *origin)
{
	size_t olen = strlen(origin);
	struct config_entry *e;

	e = malloc(sizeof(*e) + klen + 1 + vlen + 1 + olen + 1);
	if (!e)
		return NULL;
	memcpy(e->key, key, klen);
	e->key[klen] = '\0';
	e->value = e->key + klen + 1;
	memcpy(e->value, value, vlen);
	e->value[vlen] = '\0';
	e->origin = e->value + vlen + 1;
	memcpy(e->origin, origin, olen + 1);
	return e;
}

/* Index of key, or of where it would go (with *found false). */
static size_t find(const struct fy_config *cfg, const char *key, bool *found)
{
	size_t lo = 0, hi = cfg->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(cfg->entries[mid]->key, key);

		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

static const struct config_entry *lookup(const struct fy_config *cfg,
					 const char *key)
{
	bool found;
	size_t i = find(cfg, key, &found);

	return found ? cfg->entries[i] : NULL;
}

/* Takes ownership of e. Fails only when a new key would exceed the limit. */
static int put(struct fy_config *cfg, struct config_entry *e)
{
	bool found;
	size_t i = find(cfg, e->key, &found);

	if (found) {
		free(cfg->entries[i]);
		cfg->entries[i] = e;
		return 0;
	}
	if (cfg->n == FY_CONFIG_MAX_ENTRIES) {
		free(e);
		return -E2BIG;
	}
	memmove(&cfg->entries[i + 1], &cfg->entries[i],
		(cfg->n - i) * sizeof(cfg->entries[0]));
	cfg->entries[i] = e;
	cfg->n++;
	return 0;
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* Why a name is not acceptable, or NULL when it is. */
static const char *bad_name(const char *name, size_t len)
{
	size_t i;

	if (len == 0)
		return "missing name before '='";
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];

		if (is_blank((char)c))
			return "name contains whitespace";
		if (c < 0x21 || c > 0x7e)
			return "name contains a byte that is not printable "
			       "ASCII";
	}
	return NULL;
}

/*
 * Splits one line (no newline, no NUL) into trimmed name and value.
 * Returns 1 for a name=value line, 0 for a blank or comment line, or a
 * negative errno with *why saying what is wrong.
 */
static int split_line(const char *line, size_t len, const char **key,
		      size_t *klen, const char **value, size_t *vlen,
		      const char **why)
{
	const char *end = line + len, *eq, *k, *kend, *v, *vend;

	while (line < end && is_blank(*line))
		line++;
	if (line == end || *line == '#')
		return 0;
	eq = memchr(line, '=', (size_t)(end - line));
	if (!eq) {
		*why = "expected name=value";
		return -EINVAL;
	}
	k = line;
	kend = eq;
	while (kend > k && is_blank(kend[-1]))
		kend--;
	*why = bad_name(k, (size_t)(kend - k));
	if (*why)
		return -EINVAL;
	v = eq + 1;
	vend = end;
	while (v < vend && is_blank(*v))
		v++;
	while (vend > v && is_blank(vend[-1]))
		vend--;
	if (vend - v >= 2 && v[0] == '"' && vend[-1] == '"') {
		v++;
		vend--;
	}
	*key = k;
	*klen = (size_t)(kend - k);
	*value = v;
	*vlen = (size_t)(vend - v);
	return 1;
}

int fy_config_parse(struct fy_config *cfg, const char *name, const char *text,
		    size_t len)
{
	char origin[FY_ERR_MAX];
	struct fy_config *parsed = NULL;
	const char *line = text, *end = text + len;
	size_t added = 0, i;
	unsigned lineno = 0;
	int rc = 0;

	if (len > FY_CONFIG_MAX_FILE)
		return fy_err_set(-EFBIG, "%s: larger than the limit of %u "
				  "bytes", name, FY_CONFIG_MAX_FILE);
	/*
	 * Parse into a scratch config first so that a bad line leaves cfg as
	 * it was: a half-applied file is worse than none.
	 */
	parsed = fy_config_new();
	if (!parsed)
		return -ENOMEM;

	while (line < end) {
		const char *nl = memchr(line, '\n', (size_t)(end - line));
		size_t llen = (size_t)((nl ? nl : end) - line);
		const char *key, *value, *why = NULL;
		struct config_entry *e;
		size_t klen, vlen;
		bool found;

		lineno++;
		if (llen > FY_CONFIG_MAX_LINE) {
			rc = fy_err_set(-EINVAL, "%s:%u: line longer than %u "
					"bytes", name, lineno,
					FY_CONFIG_MAX_LINE);
			goto out;
		}
		if (memchr(line, '\0', llen)) {
			rc = fy_err_set(-EINVAL, "%s:%u: NUL byte in line",
					name, lineno);
			goto out;
		}
		rc = split_line(line, llen, &key, &klen, &value, &vlen, &why);
		if (rc < 0) {
			fy_err_set(rc, "%s:%u: %s", name, lineno, why);
			goto out;
		}
		line = nl ? nl + 1 : end;
		if (rc == 0)
			continue;

		snprintf(origin, sizeof(origin), "%s:%u", name, lineno);
		e = entry_new(key, klen, value, vlen, origin);
		if (!e) {
			rc = fy_err_set(-ENOMEM, "%s:%u: out of memory", name,
					lineno);
			goto out;
		}
		/* Count keys new to cfg, so the merge below cannot fail. */
		find(parsed, e->key, &found);
		if (!found && !lookup(cfg, e->key) &&
		    cfg->n + ++added > FY_CONFIG_MAX_ENTRIES) {
			free(e);
			rc = fy_err_set(-E2BIG, "%s:%u: more than %u "
					"configuration keys", name, lineno,
					FY_CONFIG_MAX_ENTRIES);
			goto out;
		}
		/* parsed holds at most cfg's keys plus the new ones. */
		put(parsed, e);
	}

	for (i = 0; i < parsed->n; i++)
		put(cfg, parsed->entries[i]);
	parsed->n = 0;
	rc = 0;
out:
	fy_config_free(parsed);
	return rc;
}

int fy_config_load(struct fy_config *cfg, const char *path)
{
	size_t len;
	void *data;
	int rc;

	rc = fy_read_file(path, FY_CONFIG_MAX_FILE, &data, &len);
	if (rc < 0)
		return rc;
	rc = fy_config_parse(cfg, path, data, len);
	free(data);
	return rc;
}

int fy_config_set(struct fy_config *cfg, const char *key, const char *value)
{
	size_t klen = strnlen(key, FY_CONFIG_MAX_LINE + 1);
	size_t vlen = strnlen(value, FY_CONFIG_MAX_LINE + 1);
	struct config_entry *e;
	const char *why;

	if (klen + vlen > FY_CONFIG_MAX_LINE)
		return fy_err_set(-EINVAL, "setting %.64s: longer than %u "
				  "bytes", key, FY_CONFIG_MAX_LINE);
	why = bad_name(key, klen);
	if (why)
		return fy_err_set(-EINVAL, "setting '%.64s': %s", key, why);
	if (memchr(value, '\n', vlen))
		return fy_err_set(-EINVAL, "setting %s: the value contains a "
				  "newline", key);
	e = entry_new(key, klen, value, vlen, ORIGIN_COMMAND_LINE);
	if (!e)
		return fy_err_set(-ENOMEM, "setting %s: out of memory", key);
	if (put(cfg, e) < 0)
		return fy_err_set(-E2BIG, "setting %s: more than %u "
				  "configuration keys", key,
				  FY_CONFIG_MAX_ENTRIES);
	return 0;
}

int fy_config_set_pair(struct fy_config *cfg, const char *key_eq_value)
{
	size_t len = strnlen(key_eq_value, FY_CONFIG_MAX_LINE + 1);
	const char *key, *value, *why = NULL;
	struct config_entry *e;
	size_t klen, vlen;
	int rc;

	if (len > FY_CONFIG_MAX_LINE)
		return fy_err_set(-EINVAL, "setting %.64s...: longer than %u "
				  "bytes", key_eq_value, FY_CONFIG_MAX_LINE);
	if (memchr(key_eq_value, '\n', len))
		return fy_err_set(-EINVAL, "setting '%.64s': contains a "
				  "newline", key_eq_value);
	/* The same rules as a line of the file, so both read alike. */
	rc = split_line(key_eq_value, len, &key, &klen, &value, &vlen, &why);
	if (rc == 0)
		why = "expected name=value";
	if (rc <= 0)
		return fy_err_set(-EINVAL, "setting '%.64s': %s", key_eq_value,
				  why);
	e = entry_new(key, klen, value, vlen, ORIGIN_COMMAND_LINE);
	if (!e)
		return fy_err_set(-ENOMEM, "setting %.64s: out of memory",
				  key_eq_value);
	if (put(cfg, e) < 0)
		return fy_err_set(-E2BIG, "setting '%.64s': more than %u "
				  "configuration keys", key_eq_value,
				  FY_CONFIG_MAX_ENTRIES);
	return 0;
}

const char *fy_config_get(const struct fy_config *cfg, const char *key)
{
	const struct config_entry *e = lookup(cfg, key);

	return e ? e->value : NULL;
}

const char *fy_config_origin(const struct fy_config *cfg, const char *key)
{
	const struct config_entry *e = lookup(cfg, key);

	return e ? e->origin : NULL;
}

int fy_config_get_int(const struct fy_config *cfg, const char *key,
		      int64_t def, int64_t min, int64_t max, int64_t *out)
{
	const struct config_entry *e = lookup(cfg, key);
	const char *p;
	bool negative;
	uint64_t n = 0;
	int64_t value;

	if (!e) {
		*out = def;
		return 0;
	}
	p = e->value;
	negative = *p == '-';
	if (*p == '-' || *p == '+')
		p++;
	if (!*p)
		goto not_integer;
	for (; *p; p++) {
		unsigned digit;

		if (*p < '0' || *p > '9')
			goto not_integer;
		digit = (unsigned)(*p - '0');
		/* Saturate: anything past INT64 is out of any range anyway. */
		if (n > (UINT64_MAX - digit) / 10)
			n = UINT64_MAX;
		else
			n = n * 10 + digit;
	}
	/* A saturated n lands here too, whatever min and max are. */
	if (negative ? n > (uint64_t)INT64_MAX + 1 : n > (uint64_t)INT64_MAX)
		goto out_of_range;
	/* Written so that -9223372036854775808 does not overflow. */
	value = negative && n ? -(int64_t)(n - 1) - 1 : (int64_t)n;
	if (value < min || value > max)
		goto out_of_range;
	*out = value;
	return 0;

not_integer:
	return fy_err_set(-EINVAL, "%s=%.64s (from %s) is not a decimal "
			  "integer", key, e->value, e->origin);
out_of_range:
	return fy_err_set(-ERANGE, "%s=%.64s (from %s) is out of range: "
			  "%lld..%lld", key, e->value, e->origin,
			  (long long)min, (long long)max);
}

int fy_config_get_bool(const struct fy_config *cfg, const char *key, bool def,
		       bool *out)
{
	static const char *const truths[] = { "1", "true", "yes", "on" };
	static const char *const lies[] = { "0", "false", "no", "off" };
	const struct config_entry *e = lookup(cfg, key);
	size_t i;

	if (!e) {
		*out = def;
		return 0;
	}
	for (i = 0; i < sizeof(truths) / sizeof(truths[0]); i++) {
		if (strcasecmp(e->value, truths[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(e->value, lies[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return fy_err_set(-EINVAL, "%s=%.64s (from %s) is not a boolean: use "
			  "true/false, yes/no, on/off or 1/0", key, e->value,
			  e->origin);
}

static bool is_known(const char *key, const char *const *known)
{
	for (; known && *known; known++) {
		size_t len = strlen(*known);

		if (len > 0 && (*known)[len - 1] == '*') {
			if (strncmp(key, *known, len - 1) == 0)
				return true;
		} else if (strcmp(key, *known) == 0) {
			return true;
		}
	}
	return false;
}

int fy_config_warn_unknown(const struct fy_config *cfg,
			   const char *const *known)
{
	int unknown = 0;
	size_t i;

	for (i = 0; i < cfg->n; i++) {
		const struct config_entry *e = cfg->entries[i];

		if (is_known(e->key, known))
			continue;
		fy_warn("unknown configuration key '%s' (%s)", e->key,
			e->origin);
		unknown++;
	}
	return unknown;
}

/* Levenshtein distance, ignoring case: "ferry.blocksize" is closest to
 * "ferry.blockSize". Both strings are bounded by FY_CONFIG_MAX_LINE. */
static size_t distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), i, j;
	size_t *row;
	size_t d;

	if (la > 256 || lb > 256)
		return SIZE_MAX;
	row = malloc((lb + 1) * sizeof(*row));
	if (!row)
		return SIZE_MAX;
	for (j = 0; j <= lb; j++)
		row[j] = j;
	for (i = 1; i <= la; i++) {
		size_t diag = row[0];

		row[0] = i;
		for (j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t cost = tolower((unsigned char)a[i - 1]) ==
					      tolower((unsigned char)b[j - 1])
					      ? 0
					      : 1;
			size_t best = diag + cost;

			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	d = row[lb];
	free(row);
	return d;
}

const char *fy_config_closest(const char *key, const char *const *known)
{
	const char *best = NULL;
	size_t best_d = SIZE_MAX;

	for (; known && *known; known++) {
		size_t len = strlen(*known), d;

		if (len == 0 || (*known)[len - 1] == '*')
			continue;
		d = distance(key, *known);
		if (d < best_d) {
			best_d = d;
			best = *known;
		}
	}
	return best;
}

int fy_config_check_unknown(const struct fy_config *cfg,
			    const char *const *known, const char *strict_prefix)
{
	size_t plen = strict_prefix ? strlen(strict_prefix) : 0;
	const struct config_entry *first = NULL;
	const char *near;
	unsigned more = 0;
	size_t i;

	for (i = 0; i < cfg->n; i++) {
		const struct config_entry *e = cfg->entries[i];

		if (is_known(e->key, known))
			continue;
		if (plen && !strncmp(e->key, strict_prefix, plen)) {
			if (first)
				more++;
			else
				first = e;
			continue;
		}
		/* Another program's namespace (VDDK's): its own tolerance, a
		 * warning. */
		fy_warn("unknown configuration key '%s' (%s)", e->key, e->origin);
	}
	if (!first)
		return 0;
	near = fy_config_closest(first->key, known);
	return fy_err_set(-EINVAL, "unknown configuration key '%s' (%s)%s%s%s%s",
			  first->key, first->origin,
			  near ? "; the closest known key is '" : "",
			  near ? near : "", near ? "'" : "",
			  more ? " (and more unknown keys of ferry.*)" : "");
}
