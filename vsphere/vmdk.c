/*
 * VMDK text descriptors: the small file ("vm.vmdk") that names a disk's
 * extents ("vm-flat.vmdk") and its parent. VMware's "Virtual Disk Format
 * 5.0" document describes it: key=value lines (createType, CID,
 * parentCID, parentFileNameHint, ddb.*) and one line per extent,
 *
 *   RW 4192256 FLAT "vm-f001.vmdk" 0
 *   ACCESS SECTORS TYPE ["FILE" [OFFSET]]
 *
 * The text comes from the datastore, so it is bounded like anything a
 * peer sends: at most FY_VMDK_MAX_DESCRIPTOR bytes, FY_VMDK_MAX_LINE per
 * line, FY_VMDK_MAX_EXTENTS extents, sector counts that cannot overflow
 * a byte offset. Parsing says what the disk is; fy_vmdk_check_flat says
 * whether the https transport can read it.
 */
#include "vsphere/vsphere.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* A byte offset (sectors * 512) must fit in 64 bits. */
#define MAX_SECTORS (UINT64_MAX / FY_VMDK_SECTOR)
#define NO_PARENT 0xffffffffu

static const struct {
	const char *name;
	enum fy_vmdk_extent_kind kind;
} kinds[] = {
	{ "FLAT", FY_VMDK_FLAT },
	{ "VMFS", FY_VMDK_VMFS },
	{ "ZERO", FY_VMDK_ZERO },
	{ "SPARSE", FY_VMDK_SPARSE },
	{ "VMFSSPARSE", FY_VMDK_VMFSSPARSE },
	{ "SESPARSE", FY_VMDK_SESPARSE },
	{ "VSANSPARSE", FY_VMDK_VSANSPARSE },
	{ "VMFSRDM", FY_VMDK_VMFSRDM },
	{ "VMFSRAW", FY_VMDK_VMFSRAW },
};

const char *fy_vmdk_extent_kind_name(enum fy_vmdk_extent_kind k)
{
	size_t i;

	for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (kinds[i].kind == k)
			return kinds[i].name;
	return "?";
}

/* The parser's cursor over one line (not NUL-terminated). */
struct line {
	const char *p, *end;
	unsigned no;
};

static void skip_space(struct line *l)
{
	while (l->p < l->end && (*l->p == ' ' || *l->p == '\t'))
		l->p++;
}

/* The next run of non-blank characters; false at the end of the line. */
static bool word(struct line *l, const char **w, size_t *n)
{
	skip_space(l);
	*w = l->p;
	while (l->p < l->end && *l->p != ' ' && *l->p != '\t')
		l->p++;
	*n = (size_t)(l->p - *w);
	return *n > 0;
}

static bool word_is(const char *w, size_t n, const char *s)
{
	return n == strlen(s) && !memcmp(w, s, n);
}

/* A decimal number of at most 20 digits that fits in uint64_t. */
static bool parse_u64(const char *w, size_t n, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;

	if (n == 0 || n > 20)
		return false;
	for (i = 0; i < n; i++) {
		unsigned d;

		if (w[i] < '0' || w[i] > '9')
			return false;
		d = (unsigned)(w[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

static bool parse_cid(const char *v, uint32_t *out)
{
	size_t n = strlen(v), i;
	uint32_t x = 0;

	if (n == 0 || n > 8)
		return false;
	for (i = 0; i < n; i++) {
		int c = tolower((unsigned char)v[i]);

		if (!isxdigit(c))
			return false;
		x = x << 4 | (uint32_t)(isdigit(c) ? c - '0' : c - 'a' + 10);
	}
	*out = x;
	return true;
}

static int bad(const char *name, unsigned line, const char *why)
{
	return fy_err_set(-EBADMSG, "VMDK descriptor %s, line %u: %s", name,
			  line, why);
}

/* A quoted string: '"' ... '"' with no '"' inside (VMware writes none). */
static int quoted(struct line *l, const char *name, char *out, size_t outlen,
		  const char *what)
{
	const char *start;
	size_t n;

	skip_space(l);
	if (l->p == l->end || *l->p != '"')
		return bad(name, l->no, what);
	start = ++l->p;
	while (l->p < l->end && *l->p != '"')
		l->p++;
	if (l->p == l->end)
		return bad(name, l->no, "unterminated quoted string");
	n = (size_t)(l->p - start);
	l->p++;
	if (n >= outlen) {
		char msg[96];

		snprintf(msg, sizeof(msg), "%s longer than %zu bytes", what,
			 outlen - 1);
		return bad(name, l->no, msg);
	}
	memcpy(out, start, n);
	out[n] = '\0';
	return 0;
}

static int parse_extent(struct line *l, const char *name,
			struct fy_vmdk_descriptor *d)
{
	struct fy_vmdk_extent *e;
	const char *w;
	size_t n, i;
	char msg[128];
	int rc;

	if (d->n_extents == FY_VMDK_MAX_EXTENTS) {
		snprintf(msg, sizeof(msg), "more than %d extents",
			 FY_VMDK_MAX_EXTENTS);
		return fy_err_set(-E2BIG, "VMDK descriptor %s, line %u: %s",
				  name, l->no, msg);
	}
	e = &d->extents[d->n_extents];
	memset(e, 0, sizeof(*e));
	word(l, &w, &n);
	e->access = word_is(w, n, "RW")       ? FY_VMDK_RW
		    : word_is(w, n, "RDONLY") ? FY_VMDK_RDONLY
					      : FY_VMDK_NOACCESS;
	if (!word(l, &w, &n) || !parse_u64(w, n, &e->sectors))
		return bad(name, l->no, "extent size is not a number of sectors");
	if (e->sectors == 0 || e->sectors > MAX_SECTORS)
		return bad(name, l->no, "extent size out of range");
	if (!word(l, &w, &n))
		return bad(name, l->no, "extent line without a type");
	for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (word_is(w, n, kinds[i].name))
			break;
	if (i == sizeof(kinds) / sizeof(kinds[0])) {
		snprintf(msg, sizeof(msg), "unknown extent type '%.*s'",
			 (int)(n < 32 ? n : 32), w);
		return bad(name, l->no, msg);
	}
	e->kind = kinds[i].kind;
	skip_space(l);
	if (e->kind != FY_VMDK_ZERO || l->p < l->end) {
		rc = quoted(l, name, e->file, sizeof(e->file),
			    "extent file name (quoted)");
		if (rc < 0)
			return rc;
		if (!e->file[0])
			return bad(name, l->no, "empty extent file name");
	}
	if (word(l, &w, &n)) {
		if (!parse_u64(w, n, &e->offset) || e->offset > MAX_SECTORS)
			return bad(name, l->no, "extent offset is not a number "
				   "of sectors");
		if (e->offset > MAX_SECTORS - e->sectors)
			return bad(name, l->no, "extent offset out of range");
	}
	if (word(l, &w, &n))
		return bad(name, l->no, "unexpected text after the extent");
	if (e->sectors > MAX_SECTORS - d->capacity / FY_VMDK_SECTOR)
		return bad(name, l->no, "extents add up to more than 2^64 bytes");
	d->capacity += e->sectors * FY_VMDK_SECTOR;
	d->n_extents++;
	return 0;
}

/* key = value, key = "value". Values of keys we do not use (ddb.*,
 * encryption.keySafe, which can be long) are only checked for shape. */
static int parse_pair(struct line *l, const char *name,
		      struct fy_vmdk_descriptor *d, bool *seen_create)
{
	const char *k = l->p, *eq, *v;
	char value[FY_VMDK_NAME_MAX];
	size_t kn, vn, i;

	eq = memchr(l->p, '=', (size_t)(l->end - l->p));
	if (!eq)
		return bad(name, l->no, "neither a key=value pair nor an "
			   "extent line");
	kn = (size_t)(eq - k);
	while (kn && (k[kn - 1] == ' ' || k[kn - 1] == '\t'))
		kn--;
	if (kn == 0)
		return bad(name, l->no, "empty key");
	for (i = 0; i < kn; i++)
		if (!isalnum((unsigned char)k[i]) && k[i] != '.' &&
		    k[i] != '_' && k[i] != '-')
			return bad(name, l->no, "key with a character other "
				   "than letters, digits, '.', '_', '-'");
	l->p = eq + 1;
	skip_space(l);
	if (l->p < l->end && *l->p == '"') {
		v = ++l->p;
		while (l->p < l->end && *l->p != '"')
			l->p++;
		if (l->p == l->end)
			return bad(name, l->no, "unterminated quoted string");
		vn = (size_t)(l->p - v);
		l->p++;
		skip_space(l);
		if (l->p != l->end)
			return bad(name, l->no, "text after a quoted value");
	} else {
		v = l->p;
		vn = (size_t)(l->end - l->p);
		while (vn && (v[vn - 1] == ' ' || v[vn - 1] == '\t'))
			vn--;
	}
	if (!word_is(k, kn, "createType") && !word_is(k, kn, "CID") &&
	    !word_is(k, kn, "parentCID") &&
	    !word_is(k, kn, "parentFileNameHint"))
		return 0;
	if (vn >= sizeof(value))
		return bad(name, l->no, "value longer than 255 bytes");
	memcpy(value, v, vn);
	value[vn] = '\0';
	if (word_is(k, kn, "createType")) {
		if (*seen_create)
			return bad(name, l->no, "createType given twice");
		*seen_create = true;
		if (vn >= sizeof(d->create_type) || !vn)
			return bad(name, l->no, "createType empty or too long");
		memcpy(d->create_type, value, vn + 1);
	} else if (word_is(k, kn, "CID")) {
		if (!parse_cid(value, &d->cid))
			return bad(name, l->no, "CID is not 8 hex digits");
	} else if (word_is(k, kn, "parentCID")) {
		if (!parse_cid(value, &d->parent_cid))
			return bad(name, l->no, "parentCID is not 8 hex digits");
	} else {
		memcpy(d->parent_hint, value, vn + 1);
	}
	return 0;
}

int fy_vmdk_parse(const char *text, size_t len, const char *name,
		  struct fy_vmdk_descriptor *out)
{
	const char *p = text, *end = text + len;
	bool seen_create = false;
	unsigned no = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	out->parent_cid = NO_PARENT;
	/* Binary sparse formats carry their descriptor inside; say so
	 * before complaining about their size. */
	if (len >= 4 && !memcmp(text, "KDMV", 4))
		return fy_err_set(-ENOTSUP, "%s is a binary sparse VMDK "
				  "(monolithicSparse or streamOptimized), not a "
				  "descriptor with flat extents", name);
	if (len >= 4 && !memcmp(text, "COWD", 4))
		return fy_err_set(-ENOTSUP, "%s is an ESX sparse (COWD) disk, "
				  "not a descriptor with flat extents", name);
	if (len > FY_VMDK_MAX_DESCRIPTOR)
		return fy_err_set(-EFBIG, "%s is larger than %u bytes: not a "
				  "VMDK text descriptor", name,
				  FY_VMDK_MAX_DESCRIPTOR);
	if (len >= 3 && !memcmp(text, "\xef\xbb\xbf", 3))
		p += 3;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		struct line l = { p, nl ? nl : end, ++no };
		const char *q;

		p = nl ? nl + 1 : end;
		if (l.end > l.p && l.end[-1] == '\r')
			l.end--;
		if ((size_t)(l.end - l.p) > FY_VMDK_MAX_LINE)
			return bad(name, no, "line longer than 1024 bytes: not "
				   "a text descriptor");
		for (q = l.p; q < l.end; q++)
			if ((unsigned char)*q < 0x20 && *q != '\t') {
				char msg[64];

				snprintf(msg, sizeof(msg), "control byte 0x%02x: "
					 "not a text descriptor",
					 (unsigned char)*q);
				return bad(name, no, msg);
			}
		skip_space(&l);
		if (l.p == l.end || *l.p == '#')
			continue;
		{
			const char *w;
			size_t n;
			struct line peek = l;

			word(&peek, &w, &n);
			if (word_is(w, n, "RW") || word_is(w, n, "RDONLY") ||
			    word_is(w, n, "NOACCESS"))
				rc = parse_extent(&l, name, out);
			else
				rc = parse_pair(&l, name, out, &seen_create);
		}
		if (rc < 0)
			return rc;
	}
	if (!seen_create)
		return fy_err_set(-EBADMSG, "VMDK descriptor %s has no "
				  "createType: not a VMDK descriptor", name);
	if (out->n_extents == 0)
		return fy_err_set(-EBADMSG, "VMDK descriptor %s names no extent",
				  name);
	return 0;
}

static bool is_delta_kind(enum fy_vmdk_extent_kind k)
{
	return k == FY_VMDK_VMFSSPARSE || k == FY_VMDK_SESPARSE ||
	       k == FY_VMDK_VSANSPARSE;
}

/* How a delta is called in messages: "SEsparse", "vmfsSparse"... */
static const char *delta_name(const struct fy_vmdk_descriptor *d)
{
	size_t i;

	for (i = 0; i < d->n_extents; i++)
		switch (d->extents[i].kind) {
		case FY_VMDK_SESPARSE:
			return "SEsparse";
		case FY_VMDK_VMFSSPARSE:
			return "vmfsSparse";
		case FY_VMDK_VSANSPARSE:
			return "vsanSparse";
		case FY_VMDK_SPARSE:
			return "sparse";
		default:
			break;
		}
	return NULL;
}

int fy_vmdk_check_flat(const struct fy_vmdk_descriptor *d, const char *name)
{
	const char *delta = delta_name(d);
	size_t i;

	if (d->parent_cid != NO_PARENT || d->parent_hint[0]) {
		if (delta)
			return fy_err_set(-ENOTSUP, "%s: delta disk (%s) chains "
					  "are not supported by the https "
					  "transport yet; use hotadd or nbd",
					  name, delta);
		return fy_err_set(-ENOTSUP, "%s: delta disk (child of %s) "
				  "chains are not supported by the https "
				  "transport yet; use hotadd or nbd", name,
				  d->parent_hint[0] ? d->parent_hint
						    : "another disk");
	}
	for (i = 0; i < d->n_extents; i++) {
		const struct fy_vmdk_extent *e = &d->extents[i];

		if (is_delta_kind(e->kind))
			return fy_err_set(-ENOTSUP, "%s: delta disk (%s) chains "
					  "are not supported by the https "
					  "transport yet; use hotadd or nbd",
					  name, delta);
		if (e->kind == FY_VMDK_SPARSE)
			return fy_err_set(-ENOTSUP, "%s: sparse extents (%s, "
					  "createType %s) are not supported by "
					  "the https transport yet; it reads "
					  "flat extents only; use hotadd or nbd",
					  name, e->file, d->create_type);
		if (e->kind == FY_VMDK_VMFSRDM || e->kind == FY_VMDK_VMFSRAW)
			return fy_err_set(-ENOTSUP, "%s is a raw device mapping "
					  "(%s): its data is on a LUN, not in "
					  "the datastore; use hotadd or nbd",
					  name, fy_vmdk_extent_kind_name(e->kind));
		if (e->access == FY_VMDK_NOACCESS)
			return fy_err_set(-ENOTSUP, "%s: extent %zu (%s) is "
					  "NOACCESS", name, i + 1,
					  e->file[0] ? e->file : "ZERO");
		/* Extent files sit next to the descriptor; a path could
		 * reach elsewhere on the datastore. */
		if (e->kind != FY_VMDK_ZERO &&
		    (strchr(e->file, '/') || strchr(e->file, '\\') ||
		     !strcmp(e->file, ".") || !strcmp(e->file, "..")))
			return fy_err_set(-ENOTSUP, "%s: extent file \"%s\" is "
					  "not in the descriptor's folder",
					  name, e->file);
	}
	return 0;
}
