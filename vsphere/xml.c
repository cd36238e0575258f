/*
 * A bounded XML reader for SOAP responses. libxml2's SAX2 interface builds
 * our own small tree: element names resolved to (namespace URI, local name),
 * xsi:type resolved by namespace (the simulator writes the prefix
 * "XMLSchema-instance:", real servers "xsi:"), leaf text only. Every bound
 * (depth, element count, text size, total memory) is checked before the
 * allocation it guards.
 *
 * SOAP forbids DTDs, so the first sign of one stops the parse: no entity
 * can be declared, hence none expanded (billion laughs), and nothing is
 * ever loaded (XML_PARSE_NONET, no XML_PARSE_DTDLOAD, no XML_PARSE_NOENT).
 */
#include "vsphere/vs_int.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libxml/parser.h>
#include <libxml/parserInternals.h>

/* ---- arena ------------------------------------------------------------- */

#define ARENA_CHUNK (64 * 1024)

struct vs_arena_chunk {
	struct vs_arena_chunk *next;
	size_t used, size;
	max_align_t data[];
};

void vs_arena_init(struct vs_arena *a, size_t limit)
{
	a->head = NULL;
	a->total = 0;
	a->limit = limit;
}

void vs_arena_release(struct vs_arena *a)
{
	struct vs_arena_chunk *c = a->head, *next;

	for (; c; c = next) {
		next = c->next;
		free(c);
	}
	a->head = NULL;
	a->total = 0;
}

void *vs_arena_alloc(struct vs_arena *a, size_t n)
{
	struct vs_arena_chunk *c = a->head;
	size_t align = sizeof(max_align_t), size;
	void *p;

	if (n > SIZE_MAX / 2)
		return NULL;
	n = (n + align - 1) / align * align;
	if (n == 0)
		n = align;
	if (!c || c->size - c->used < n) {
		/* Large requests get a chunk of their own so that the
		 * current chunk's free room is not wasted. */
		size = n > ARENA_CHUNK / 4 ? n : ARENA_CHUNK;
		if (a->limit && a->total + size + sizeof(*c) > a->limit)
			return NULL;
		c = malloc(sizeof(*c) + size);
		if (!c)
			return NULL;
		c->used = 0;
		c->size = size;
		a->total += size + sizeof(*c);
		if (size == n && a->head) {
			c->next = a->head->next;
			a->head->next = c;
		} else {
			c->next = a->head;
			a->head = c;
		}
	}
	p = (char *)c->data + c->used;
	c->used += n;
	memset(p, 0, n);
	return p;
}

void *vs_arena_array(struct vs_arena *a, size_t n, size_t size)
{
	if (size && n > SIZE_MAX / size)
		return NULL;
	return vs_arena_alloc(a, n * size);
}

char *vs_arena_strndup(struct vs_arena *a, const char *s, size_t n)
{
	char *p = vs_arena_alloc(a, n + 1);

	if (p) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
}

char *vs_arena_strdup(struct vs_arena *a, const char *s)
{
	if (!s)
		s = "";
	return vs_arena_strndup(a, s, strlen(s));
}

/* ---- the SAX handlers -------------------------------------------------- */

struct sax_state {
	xmlParserCtxtPtr ctxt;
	const struct fy_vs_limits *lim;
	struct vs_doc *doc;
	struct vs_node *cur;
	unsigned depth;
	char *text;
	size_t text_len, text_cap;
	bool text_dropped; /* mixed content of a non-leaf: ignored */
	int err;
	char msg[200];
};

static void sax_fail(struct sax_state *st, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void sax_fail(struct sax_state *st, int code, const char *fmt, ...)
{
	va_list ap;

	if (st->err)
		return;
	st->err = code;
	va_start(ap, fmt);
	vsnprintf(st->msg, sizeof(st->msg), fmt, ap);
	va_end(ap);
	xmlStopParser(st->ctxt);
}

/* Namespace URIs repeat on every element: keep the usual ones shared. */
static const char *const known_ns[] = {
	"urn:vim25", VS_NS_SOAPENV, VS_NS_XSI, "urn:internalvim25",
	"http://www.w3.org/2001/XMLSchema", "",
};

static const char *intern_ns(struct sax_state *st, const xmlChar *uri)
{
	size_t i;

	if (!uri)
		return "";
	for (i = 0; i < sizeof(known_ns) / sizeof(known_ns[0]); i++)
		if (!strcmp((const char *)uri, known_ns[i]))
			return known_ns[i];
	return vs_arena_strdup(&st->doc->arena, (const char *)uri);
}

/* The local part of a QName value ("vim25:VirtualDisk" -> "VirtualDisk"). */
static const char *qname_local(const char *v, size_t *len)
{
	const char *colon = memchr(v, ':', *len);

	if (colon) {
		*len -= (size_t)(colon + 1 - v);
		return colon + 1;
	}
	return v;
}

static void on_start(void *ctx, const xmlChar *localname,
		     const xmlChar *prefix, const xmlChar *uri,
		     int nb_namespaces, const xmlChar **namespaces,
		     int nb_attributes, int nb_defaulted,
		     const xmlChar **attrs)
{
	struct sax_state *st = ctx;
	struct vs_arena *a = &st->doc->arena;
	struct vs_node *n;
	int i;

	if (st->err)
		return;
	if (st->depth >= st->lim->max_depth) {
		sax_fail(st, -EBADMSG, "elements nested deeper than %u",
			 st->lim->max_depth);
		return;
	}
	if (st->doc->n_elements >= st->lim->max_elements) {
		sax_fail(st, -EBADMSG, "more than %zu elements",
			 st->lim->max_elements);
		return;
	}
	n = vs_arena_alloc(a, sizeof(*n));
	if (!n)
		goto nomem;
	n->name = vs_arena_strdup(a, (const char *)localname);
	n->ns = intern_ns(st, uri);
	n->text = "";
	if (!n->name || !n->ns)
		goto nomem;
	/* attrs holds 5 pointers per attribute: local name, prefix, URI,
	 * value start, value end. */
	for (i = 0; i < nb_attributes; i++) {
		const xmlChar **at = attrs + 5 * i;
		const char *v = (const char *)at[3];
		size_t vlen = (size_t)(at[4] - at[3]);

		if (!strcmp((const char *)at[0], "type") && at[2] &&
		    !strcmp((const char *)at[2], VS_NS_XSI)) {
			v = qname_local(v, &vlen);
			n->xsi_type = vs_arena_strndup(a, v, vlen);
			if (!n->xsi_type)
				goto nomem;
		} else if (!strcmp((const char *)at[0], "type") && !at[2]) {
			n->type_attr = vs_arena_strndup(a, v, vlen);
			if (!n->type_attr)
				goto nomem;
		}
	}
	n->parent = st->cur;
	if (st->cur) {
		if (st->cur->last)
			st->cur->last->next = n;
		else
			st->cur->first = n;
		st->cur->last = n;
	} else if (!st->doc->root) {
		st->doc->root = n;
	}
	/* Whatever text the parent had so far was layout between elements. */
	st->text_len = 0;
	st->cur = n;
	st->depth++;
	st->doc->n_elements++;
	return;
nomem:
	sax_fail(st, -EBADMSG, "response needs more memory than allowed");
}

static void on_end(void *ctx, const xmlChar *localname, const xmlChar *prefix,
		   const xmlChar *uri)
{
	struct sax_state *st = ctx;
	struct vs_node *n = st->cur;

	if (st->err || !n)
		return;
	if (!n->first && st->text_len) {
		n->text = vs_arena_strndup(&st->doc->arena, st->text,
					   st->text_len);
		if (!n->text) {
			sax_fail(st, -EBADMSG,
				 "response needs more memory than allowed");
			return;
		}
	}
	st->text_len = 0;
	st->cur = n->parent;
	st->depth--;
}

static void on_text(void *ctx, const xmlChar *ch, int len)
{
	struct sax_state *st = ctx;
	size_t need;

	if (st->err || !st->cur || len <= 0)
		return;
	/* Only leaves keep text; a non-leaf's is layout. */
	if (st->cur->first)
		return;
	need = st->text_len + (size_t)len;
	if (need > st->lim->max_text) {
		sax_fail(st, -EBADMSG, "a text value longer than %zu bytes",
			 st->lim->max_text);
		return;
	}
	if (need + 1 > st->text_cap) {
		size_t cap = st->text_cap ? st->text_cap : 256;
		char *p;

		while (cap < need + 1)
			cap *= 2;
		if (cap > st->lim->max_text + 1)
			cap = st->lim->max_text + 1;
		p = realloc(st->text, cap);
		if (!p) {
			sax_fail(st, -ENOMEM, "out of memory");
			return;
		}
		st->text = p;
		st->text_cap = cap;
	}
	memcpy(st->text + st->text_len, ch, (size_t)len);
	st->text_len = need;
}

static void on_dtd(void *ctx, const xmlChar *name, const xmlChar *external_id,
		   const xmlChar *system_id)
{
	sax_fail(ctx, -EBADMSG, "a DTD, which SOAP does not allow");
}

static void on_entity_decl(void *ctx, const xmlChar *name, int type,
			   const xmlChar *public_id, const xmlChar *system_id,
			   xmlChar *content)
{
	sax_fail(ctx, -EBADMSG, "an entity declaration, which SOAP does not allow");
}

/* Only XML's own five entities exist here. */
static xmlEntityPtr on_get_entity(void *ctx, const xmlChar *name)
{
	return xmlGetPredefinedEntity(name);
}

static void on_pi(void *ctx, const xmlChar *target, const xmlChar *data)
{
}

static void on_serror(void *ctx, xmlErrorPtr e)
{
	struct sax_state *st = ctx;
	char msg[160];
	size_t n;

	if (st->err || !e || e->level < XML_ERR_ERROR)
		return;
	snprintf(msg, sizeof(msg), "%s", e->message ? e->message : "error");
	n = strlen(msg);
	while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
		msg[--n] = '\0';
	sax_fail(st, -EBADMSG, "%s at line %d", msg, e->line);
}

static pthread_once_t xml_once = PTHREAD_ONCE_INIT;

static void xml_init(void)
{
	xmlInitParser();
}

/* Chunks fed to the parser: a stop request takes effect between them. */
#define FEED_CHUNK (256 * 1024)

int vs_xml_parse(const char *data, size_t len, const struct fy_vs_limits *lim,
		 struct vs_doc **out)
{
	struct fy_vs_limits def;
	struct sax_state st;
	xmlSAXHandler sax;
	struct vs_doc *doc;
	size_t off = 0;
	int rc = 0;

	*out = NULL;
	if (!lim) {
		fy_vs_limits_default(&def);
		lim = &def;
	}
	if (len > lim->max_response)
		return fy_err_set(-EFBIG, "response of %zu bytes is over the "
				  "%zu-byte limit", len, lim->max_response);
	if (len > INT32_MAX)
		return fy_err_set(-EFBIG, "response too large");
	pthread_once(&xml_once, xml_init);
	doc = calloc(1, sizeof(*doc));
	if (!doc)
		return fy_err_set(-ENOMEM, "out of memory");
	/* Nodes, names and text: a tree never needs much more than the
	 * document plus the nodes themselves. */
	vs_arena_init(&doc->arena, 2 * lim->max_response +
			  lim->max_elements * (sizeof(struct vs_node) + 64) +
			  (1 << 20));

	memset(&st, 0, sizeof(st));
	st.lim = lim;
	st.doc = doc;
	memset(&sax, 0, sizeof(sax));
	sax.initialized = XML_SAX2_MAGIC;
	sax.startElementNs = on_start;
	sax.endElementNs = on_end;
	sax.characters = on_text;
	sax.cdataBlock = on_text;
	sax.internalSubset = on_dtd;
	sax.externalSubset = on_dtd;
	sax.entityDecl = on_entity_decl;
	sax.getEntity = on_get_entity;
	sax.processingInstruction = on_pi;
	sax.serror = on_serror;

	st.ctxt = xmlCreatePushParserCtxt(&sax, &st, NULL, 0, "response");
	if (!st.ctxt) {
		rc = fy_err_set(-ENOMEM, "cannot create an XML parser");
		goto out;
	}
	xmlCtxtUseOptions(st.ctxt, XML_PARSE_NONET | XML_PARSE_NOERROR |
					   XML_PARSE_NOWARNING);
	do {
		size_t n = len - off < FEED_CHUNK ? len - off : FEED_CHUNK;
		int last = off + n == len;

		if (xmlParseChunk(st.ctxt, data + off, (int)n, last) != 0 &&
		    !st.err) {
			const xmlError *e = xmlCtxtGetLastError(st.ctxt);

			st.err = -EBADMSG;
			snprintf(st.msg, sizeof(st.msg), "%s",
				 e && e->message ? e->message
						 : "not well-formed XML");
		}
		off += n;
	} while (off < len && !st.err);
	if (!st.err && (!doc->root || st.cur)) {
		st.err = -EBADMSG;
		snprintf(st.msg, sizeof(st.msg), "%s",
			 doc->root ? "document ends inside an element"
				   : "no XML element at all");
	}
	if (st.err) {
		size_t n = strlen(st.msg);

		while (n && (st.msg[n - 1] == '\n' || st.msg[n - 1] == ' '))
			st.msg[--n] = '\0';
		rc = fy_err_set(st.err, "%s", st.msg);
		goto out;
	}
	*out = doc;
	doc = NULL;
out:
	if (st.ctxt)
		xmlFreeParserCtxt(st.ctxt);
	free(st.text);
	vs_doc_free(doc);
	return rc;
}

void vs_doc_free(struct vs_doc *doc)
{
	if (!doc)
		return;
	vs_arena_release(&doc->arena);
	free(doc);
}

/* ---- tree helpers ------------------------------------------------------ */

struct vs_node *vs_child(const struct vs_node *n, const char *name)
{
	struct vs_node *c;

	if (!n)
		return NULL;
	for (c = n->first; c; c = c->next)
		if (!strcmp(c->name, name))
			return c;
	return NULL;
}

struct vs_node *vs_next_same(const struct vs_node *n)
{
	struct vs_node *c;

	for (c = n->next; c; c = c->next)
		if (!strcmp(c->name, n->name))
			return c;
	return NULL;
}

struct vs_node *vs_first(const struct vs_node *n)
{
	return n ? n->first : NULL;
}

struct vs_node *vs_path(const struct vs_node *n, const char *path)
{
	char part[128];

	while (n && *path) {
		const char *slash = strchr(path, '/');
		size_t len = slash ? (size_t)(slash - path) : strlen(path);

		if (len >= sizeof(part))
			return NULL;
		memcpy(part, path, len);
		part[len] = '\0';
		n = vs_child(n, part);
		path += len + (slash ? 1 : 0);
	}
	return (struct vs_node *)n;
}

const char *vs_child_text(const struct vs_node *n, const char *name)
{
	const struct vs_node *c = vs_child(n, name);

	return c ? c->text : NULL;
}

int vs_parse_i64(const char *s, int64_t *out)
{
	char *end;
	long long v;

	if (!s || !*s)
		return -EINVAL;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || *end)
		return -EINVAL;
	*out = v;
	return 0;
}

bool vs_child_bool(const struct vs_node *n, const char *name, bool def)
{
	const char *t = vs_child_text(n, name);

	if (!t)
		return def;
	if (!strcmp(t, "true") || !strcmp(t, "1"))
		return true;
	if (!strcmp(t, "false") || !strcmp(t, "0"))
		return false;
	return def;
}

int64_t vs_child_i64(const struct vs_node *n, const char *name, int64_t def)
{
	int64_t v;

	if (vs_parse_i64(vs_child_text(n, name), &v) < 0)
		return def;
	return v;
}

int vs_node_moref(const struct vs_node *n, struct fy_vs_moref *out)
{
	const char *type, *v;
	size_t len;

	memset(out, 0, sizeof(*out));
	if (!n)
		return -EBADMSG;
	type = n->type_attr ? n->type_attr : "";
	/* Tolerate layout around the value. */
	v = n->text;
	while (*v == ' ' || *v == '\n' || *v == '\r' || *v == '\t')
		v++;
	len = strlen(v);
	while (len && (v[len - 1] == ' ' || v[len - 1] == '\n' ||
		       v[len - 1] == '\r' || v[len - 1] == '\t'))
		len--;
	if (strlen(type) >= sizeof(out->type) || len >= sizeof(out->value) ||
	    n->first)
		return fy_err_set(-EBADMSG, "malformed object reference <%s>",
				  n->name);
	strcpy(out->type, type);
	memcpy(out->value, v, len);
	out->value[len] = '\0';
	return 0;
}

const char *vs_node_type(const struct vs_node *n)
{
	return n->xsi_type ? n->xsi_type : n->name;
}

void vs_moref_set(struct fy_vs_moref *m, const char *type, const char *value)
{
	memset(m, 0, sizeof(*m));
	snprintf(m->type, sizeof(m->type), "%s", type ? type : "");
	snprintf(m->value, sizeof(m->value), "%s", value ? value : "");
}

bool vs_moref_eq(const struct fy_vs_moref *a, const struct fy_vs_moref *b)
{
	return a->value[0] && !strcmp(a->value, b->value) &&
	       (!a->type[0] || !b->type[0] || !strcmp(a->type, b->type));
}

void vs_copy(char *dst, size_t n, const char *src)
{
	size_t len = src ? strnlen(src, n - 1) : 0;

	if (!n)
		return;
	if (len)
		memcpy(dst, src, len);
	dst[len] = '\0';
}

struct fy_vs_moref vs_typed(const struct fy_vs_moref *m, const char *def)
{
	struct fy_vs_moref out = *m;

	if (!out.type[0])
		snprintf(out.type, sizeof(out.type), "%s", def);
	return out;
}

/* ---- request buffers --------------------------------------------------- */

void vs_buf_init(struct vs_buf *b, size_t max)
{
	memset(b, 0, sizeof(*b));
	b->max = max;
}

void vs_buf_release(struct vs_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

void vs_buf_add(struct vs_buf *b, const char *s, size_t n)
{
	if (b->err)
		return;
	if (n > b->max || b->len > b->max - n) {
		b->err = -E2BIG;
		return;
	}
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		char *p;

		while (cap < b->len + n + 1)
			cap *= 2;
		p = realloc(b->data, cap);
		if (!p) {
			b->err = -ENOMEM;
			return;
		}
		b->data = p;
		b->cap = cap;
	}
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void vs_buf_str(struct vs_buf *b, const char *s)
{
	vs_buf_add(b, s, strlen(s));
}

void vs_buf_printf(struct vs_buf *b, const char *fmt, ...)
{
	char tmp[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		if (!b->err)
			b->err = -E2BIG;
		return;
	}
	vs_buf_add(b, tmp, (size_t)n);
}

void vs_buf_esc(struct vs_buf *b, const char *s)
{
	const char *run = s;

	for (; *s; s++) {
		const char *rep = NULL;

		switch (*s) {
		case '&': rep = "&amp;"; break;
		case '<': rep = "&lt;"; break;
		case '>': rep = "&gt;"; break;
		case '"': rep = "&quot;"; break;
		case '\'': rep = "&apos;"; break;
		}
		if (rep) {
			vs_buf_add(b, run, (size_t)(s - run));
			vs_buf_str(b, rep);
			run = s + 1;
		}
	}
	vs_buf_add(b, run, (size_t)(s - run));
}

void vs_buf_moref(struct vs_buf *b, const char *tag,
		  const struct fy_vs_moref *m)
{
	vs_buf_printf(b, "<%s type=\"", tag);
	vs_buf_esc(b, m->type);
	vs_buf_str(b, "\">");
	vs_buf_esc(b, m->value);
	vs_buf_printf(b, "</%s>", tag);
}

void vs_buf_elem(struct vs_buf *b, const char *tag, const char *text)
{
	vs_buf_printf(b, "<%s>", tag);
	vs_buf_esc(b, text);
	vs_buf_printf(b, "</%s>", tag);
}
