/*
 * The OVF environment (ovf-env.xml): what vSphere hands a deployed
 * appliance, through VMware Tools' guestinfo.ovfEnv or on a CD (the OVF
 * "iso" transport). DMTF DSP0243 section 11: an Environment element in the
 * namespace http://schemas.dmtf.org/ovf/environment/1 whose PropertySection
 * holds Property elements with key and value attributes in that namespace.
 *
 * The document comes from outside (any admin of the vCenter, or a CD): it
 * is bounded before libxml2 sees it, a DTD is refused (no entity may
 * expand), and only the elements named above are read, by namespace, never
 * by prefix.
 */
#include "vsphere/vsphere.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#define OVF_ENV_NS "http://schemas.dmtf.org/ovf/environment/1"

static bool in_env_ns(const xmlNode *n)
{
	return n->ns && n->ns->href &&
	       strcmp((const char *)n->ns->href, OVF_ENV_NS) == 0;
}

static bool is_env_element(const xmlNode *n, const char *name)
{
	return n->type == XML_ELEMENT_NODE && in_env_ns(n) &&
	       strcmp((const char *)n->name, name) == 0;
}

/* An attribute in the environment namespace (oe:key), or, as some
 * generators write it, without a namespace. */
static const char *env_attr(const xmlNode *n, const char *name)
{
	const xmlAttr *a;

	for (a = n->properties; a; a = a->next) {
		if (strcmp((const char *)a->name, name) != 0)
			continue;
		if (a->ns && (!a->ns->href ||
			      strcmp((const char *)a->ns->href, OVF_ENV_NS) != 0))
			continue;
		if (!a->children)
			return "";
		if (a->children->type != XML_TEXT_NODE || a->children->next)
			return NULL;
		return (const char *)a->children->content;
	}
	return NULL;
}

static bool valid_key(const char *k)
{
	size_t i;

	if (!k[0])
		return false;
	for (i = 0; k[i]; i++) {
		char c = k[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

void fy_ovf_env_free(struct fy_ovf_env *env)
{
	size_t i;

	if (!env)
		return;
	for (i = 0; i < env->n; i++) {
		free(env->props[i].key);
		free(env->props[i].value);
	}
	free(env->props);
	free(env);
}

const char *fy_ovf_env_get(const struct fy_ovf_env *env, const char *key)
{
	size_t i;

	for (i = 0; env && i < env->n; i++)
		if (strcmp(env->props[i].key, key) == 0)
			return env->props[i].value;
	return NULL;
}

static int add_property(struct fy_ovf_env *env, const char *key,
			const char *value)
{
	struct fy_ovf_property *p;
	size_t klen = strlen(key), vlen = strlen(value), i;

	if (klen > FY_OVF_ENV_MAX_KEY || !valid_key(key))
		return fy_err_set(-EBADMSG,
				  "property key \"%.64s\" is not a key (letters, digits, '.', '_', '-'; at most %d bytes)",
				  key, FY_OVF_ENV_MAX_KEY);
	if (vlen > FY_OVF_ENV_MAX_VALUE)
		return fy_err_set(-EFBIG,
				  "property %s: value of %zu bytes is over the limit of %d",
				  key, vlen, FY_OVF_ENV_MAX_VALUE);
	if (env->n >= FY_OVF_ENV_MAX_PROPERTIES)
		return fy_err_set(-EFBIG, "more than %d properties",
				  FY_OVF_ENV_MAX_PROPERTIES);
	for (i = 0; i < env->n; i++)
		if (strcmp(env->props[i].key, key) == 0)
			return fy_err_set(-EBADMSG, "property %s is given twice",
					  key);
	if (env->n == env->cap) {
		size_t cap = env->cap ? 2 * env->cap : 16;
		p = realloc(env->props, cap * sizeof(*p));
		if (!p)
			return fy_err_set(-ENOMEM, "out of memory");
		env->props = p;
		env->cap = cap;
	}
	p = &env->props[env->n];
	p->key = strdup(key);
	p->value = strdup(value);
	if (!p->key || !p->value) {
		free(p->key);
		free(p->value);
		return fy_err_set(-ENOMEM, "out of memory");
	}
	env->n++;
	return 0;
}

int fy_ovf_env_parse(const char *buf, size_t len, struct fy_ovf_env **out)
{
	struct fy_ovf_env *env = NULL;
	xmlDoc *doc = NULL;
	xmlNode *root, *sec, *p;
	size_t elements = 0;
	int rc;

	*out = NULL;
	if (len == 0)
		return fy_err_set(-EBADMSG, "the OVF environment is empty");
	if (len > FY_OVF_ENV_MAX_BYTES)
		return fy_err_set(-EFBIG,
				  "the OVF environment is %zu bytes, over the limit of %d",
				  len, FY_OVF_ENV_MAX_BYTES);
	/* No network, no entity substitution, no DTD loading; errors are
	 * reported here, not printed by libxml2. */
	doc = xmlReadMemory(buf, (int)len, "ovf-env.xml", NULL,
			    XML_PARSE_NONET | XML_PARSE_NOERROR |
				XML_PARSE_NOWARNING | XML_PARSE_NOCDATA);
	if (!doc) {
		const xmlError *e = xmlGetLastError();
		const char *m = e && e->message ? e->message : "parse error";
		/* libxml2's message ends with a newline. */
		int mlen = (int)strcspn(m, "\n");

		rc = fy_err_set(-EBADMSG,
				"the OVF environment is not well-formed XML (line %d: %.*s)",
				e ? e->line : 0, mlen, m);
		xmlResetLastError();
		goto out;
	}
	if (doc->intSubset || doc->extSubset) {
		rc = fy_err_set(-EBADMSG,
				"the OVF environment has a DOCTYPE, which is refused");
		goto out;
	}
	root = xmlDocGetRootElement(doc);
	if (!root || !is_env_element(root, "Environment")) {
		rc = fy_err_set(-EBADMSG,
				"the document is not an OVF environment (root element %.64s in namespace %.128s; want Environment in %s)",
				root ? (const char *)root->name : "(none)",
				root && root->ns && root->ns->href ?
					(const char *)root->ns->href : "(none)",
				OVF_ENV_NS);
		goto out;
	}
	env = calloc(1, sizeof(*env));
	if (!env) {
		rc = fy_err_set(-ENOMEM, "out of memory");
		goto out;
	}
	for (sec = root->children; sec; sec = sec->next) {
		if (++elements > FY_OVF_ENV_MAX_ELEMENTS) {
			rc = fy_err_set(-EFBIG, "more than %d elements",
					FY_OVF_ENV_MAX_ELEMENTS);
			goto out;
		}
		if (!is_env_element(sec, "PropertySection"))
			continue;
		for (p = sec->children; p; p = p->next) {
			const char *key, *value;

			if (++elements > FY_OVF_ENV_MAX_ELEMENTS) {
				rc = fy_err_set(-EFBIG, "more than %d elements",
						FY_OVF_ENV_MAX_ELEMENTS);
				goto out;
			}
			if (!is_env_element(p, "Property"))
				continue;
			key = env_attr(p, "key");
			value = env_attr(p, "value");
			if (!key) {
				rc = fy_err_set(-EBADMSG,
						"a Property on line %d has no key",
						p->line);
				goto out;
			}
			if (!value) {
				rc = fy_err_set(-EBADMSG,
						"property %.64s (line %d) has no value",
						key, p->line);
				goto out;
			}
			rc = add_property(env, key, value);
			if (rc < 0)
				goto out;
		}
	}
	*out = env;
	env = NULL;
	rc = 0;
out:
	fy_ovf_env_free(env);
	xmlFreeDoc(doc);
	return rc;
}
