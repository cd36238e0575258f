/*
 * The vsphere folder's private header: shared by its files, its unit tests
 * and its fuzzer, never by other folders.
 */
#ifndef FERRY_VSPHERE_INT_H
#define FERRY_VSPHERE_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vsphere/vsphere.h"

#define VS_NS_SOAPENV "http://schemas.xmlsoap.org/soap/envelope/"
#define VS_NS_XSI "http://www.w3.org/2001/XMLSchema-instance"

/* ---- arena: many small strings freed at once --------------------------- */

struct vs_arena_chunk;

struct vs_arena {
	struct vs_arena_chunk *head;
	size_t total;  /* bytes allocated */
	size_t limit;  /* 0: none */
};

void vs_arena_init(struct vs_arena *a, size_t limit);
void vs_arena_release(struct vs_arena *a);
/* Zeroed memory; NULL when out of memory or over the limit. */
void *vs_arena_alloc(struct vs_arena *a, size_t n);
void *vs_arena_array(struct vs_arena *a, size_t n, size_t size);
char *vs_arena_strndup(struct vs_arena *a, const char *s, size_t n);
/* NULL s gives "". */
char *vs_arena_strdup(struct vs_arena *a, const char *s);

/* ---- XML: a bounded tree with names resolved by namespace -------------- */

struct vs_node {
	const char *name;       /* local name */
	const char *ns;         /* namespace URI, "" when none */
	const char *xsi_type;   /* local part of xsi:type, or NULL */
	const char *type_attr;  /* the unqualified "type" attribute (MoRefs) */
	const char *text;       /* a leaf's character data; "" otherwise */
	struct vs_node *parent, *first, *last, *next;
};

struct vs_doc {
	struct vs_arena arena;
	struct vs_node *root;
	size_t n_elements;
};

/* Parses len bytes into a tree. No DTD, no entities but XML's five, no
 * network; bounded by lim. Errors are -EBADMSG (not well-formed or over a
 * bound) with the reason. */
int vs_xml_parse(const char *data, size_t len, const struct fy_vs_limits *lim,
		 struct vs_doc **out);
void vs_doc_free(struct vs_doc *doc);

struct vs_node *vs_child(const struct vs_node *n, const char *name);
/* The next sibling with the same local name as n. */
struct vs_node *vs_next_same(const struct vs_node *n);
/* The first element child whatever its name. */
struct vs_node *vs_first(const struct vs_node *n);
/* "a/b/c" from n. */
struct vs_node *vs_path(const struct vs_node *n, const char *path);
/* Text of child name, or NULL when absent. */
const char *vs_child_text(const struct vs_node *n, const char *name);
int vs_parse_i64(const char *s, int64_t *out);
bool vs_child_bool(const struct vs_node *n, const char *name, bool def);
int64_t vs_child_i64(const struct vs_node *n, const char *name, int64_t def);
/* A MoRef element: type attribute and text. -EBADMSG when malformed. */
int vs_node_moref(const struct vs_node *n, struct fy_vs_moref *out);
/* The type name of a node: xsi:type or else its element name. */
const char *vs_node_type(const struct vs_node *n);

/* ---- SOAP -------------------------------------------------------------- */

struct vs_reply {
	struct vs_doc *doc;
	struct vs_node *response;   /* <MethodResponse> */
	struct vs_node *returnval;  /* first <returnval>, NULL for void */
	uint64_t generation;        /* the login the request was sent under */
};

/* Turns a response body into a reply or a fault. A fault returns the
 * errno that fits it and fills *fault; anything not a SOAP envelope is
 * -EBADMSG with a sentence saying what came instead. method names the
 * request for messages and is checked against the response element. */
int vs_soap_parse(const char *data, size_t len, const struct fy_vs_limits *lim,
		  const char *method, struct vs_reply *out,
		  struct fy_vs_fault *fault);
void vs_reply_release(struct vs_reply *r);

/* Fills f from a fault object (the element whose xsi:type is the fault)
 * and a message; used by SOAP faults, task errors and missingSet. */
void vs_fault_from_node(const struct vs_node *fault_node, const char *message,
			struct fy_vs_fault *f);
/* The errno a fault type maps to. */
int vs_fault_errno(const char *type);
/* "NoPermission on vm-42: missing privilege X: message" */
void vs_fault_describe(const struct fy_vs_fault *f, char *out, size_t outlen);
/* Records f as the calling thread's last fault. */
void vs_fault_record(const struct fy_vs_fault *f);
void vs_fault_clear(void);
/* Whether the text starts like an HTML page; title extracted if so. */
bool vs_looks_like_html(const char *data, size_t len, char *title,
			size_t titlelen);

/* ---- request bodies ---------------------------------------------------- */

struct vs_buf {
	char *data;
	size_t len, cap, max;
	int err;  /* sticky: -ENOMEM or -E2BIG */
};

void vs_buf_init(struct vs_buf *b, size_t max);
void vs_buf_release(struct vs_buf *b);
void vs_buf_add(struct vs_buf *b, const char *s, size_t n);
void vs_buf_str(struct vs_buf *b, const char *s);
void vs_buf_printf(struct vs_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* XML-escaped text. */
void vs_buf_esc(struct vs_buf *b, const char *s);
/* <tag type="T">V</tag> */
void vs_buf_moref(struct vs_buf *b, const char *tag,
		  const struct fy_vs_moref *m);
/* <tag>escaped</tag> */
void vs_buf_elem(struct vs_buf *b, const char *tag, const char *text);

/* ---- the client -------------------------------------------------------- */

struct vs_http_resp {
	long status;
	char *data;
	size_t len;
	char content_type[128];
};

/* A transport replaced by unit tests: given the SOAP body of a request,
 * produce the HTTP status and body of the response (malloc'd). */
typedef int (*vs_transport_fn)(void *opaque, const char *method,
			       const char *body, size_t len,
			       struct vs_http_resp *resp);

struct vs_conn;
struct vs_access;

struct fy_vs_client {
	/* configuration, fixed after create */
	char *url;            /* https://host[:port]/sdk */
	char *versions_url;   /* https://host[:port]/sdk/vimServiceVersions.xml */
	char *user;
	char *password;       /* cleansed on free; never logged */
	char *ca_file;
	uint8_t pin[32];
	bool pinned;
	bool verify;
	long connect_timeout_ms;
	long request_timeout_ms;
	long stall_seconds;
	struct fy_vs_limits limits;
	unsigned page_size;
	int task_timeout_s;
	int prepare_retries;
	int prepare_interval_s;
	unsigned max_conns;
	char forced_version[32];
	char *datacenter;     /* ferry.vcenter.datacenter, NULL when unset */

	/* learnt at connect */
	char version[32];      /* "6.7.3": urn:vim25/<version> */
	struct fy_vs_about about;
	struct fy_vs_moref root_folder, property_collector, view_manager,
	    session_manager, search_index, authorization_manager;
	bool is_vcenter;

	/* session: guarded by lock */
	pthread_mutex_t lock;
	pthread_cond_t conn_free;
	pthread_mutex_t login_lock;  /* one login at a time */
	pthread_mutex_t reconfig_lock; /* slot choice + reconfigure */
	char cookie[512];
	uint64_t generation;   /* bumped by each login */
	double login_time;     /* fy_now() of the last login */
	char sha1_thumbprint[3 * 20]; /* of the last server certificate
				       * accepted, "" until a handshake */
	unsigned logins;
	bool logged_in;
	struct vs_conn *idle;
	unsigned n_conns;
	struct vs_access *access;  /* PrepareForAccess calls not yet ended */

	fy_vs_progress_cb progress;
	void *progress_opaque;

	vs_transport_fn transport;   /* tests only */
	void *transport_opaque;
};

/* Replaces the network (tests): every call goes to fn. Also marks the
 * client connected as a vCenter speaking version 6.7. */
void vs_client_set_transport(struct fy_vs_client *c, vs_transport_fn fn,
			     void *opaque);

/* One SOAP call: body is the inner XML of the request element (without
 * _this when this is NULL). ns NULL is urn:vim25. On success *reply holds
 * the parsed response. A NotAuthenticated fault logs in again once and
 * repeats the call. what names the object for messages ("vm-42"). */
int vs_call(struct fy_vs_client *c, const char *method, const char *ns,
	    const struct fy_vs_moref *this, const char *body, const char *what,
	    struct vs_reply *reply);

/* HTTP POST (or GET when body is NULL) of url; resp->data malloc'd. */
int vs_http(struct fy_vs_client *c, const char *url, const char *soap_action,
	    const char *body, size_t len, bool with_cookie, bool login,
	    struct vs_http_resp *resp);
void vs_http_resp_release(struct vs_http_resp *r);
void vs_http_pool_free(struct fy_vs_client *c);

/* What a handshake learnt, for the error message; one per transfer that
 * may open a connection, alive until that transfer ends. */
struct vs_tls_state {
	struct fy_vs_client *c;
	char thumbprint[3 * 32];
	bool pin_mismatch;
	char verify_error[160];
};

/* Applies the client's certificate policy (pin, CA file, or off) to a
 * curl easy handle: every HTTPS request to the server goes through this,
 * so SOAP calls and datastore reads check certificates the same way. */
void vs_http_tls_setup(struct fy_vs_client *c, void *easy,
		       struct vs_tls_state *ts);
/* Whether a failed transfer failed because of the certificate. */
bool vs_http_tls_failed(const struct vs_tls_state *ts, int curl_code);
/* Records the sentence for a refused certificate and returns -EPERM. */
int vs_http_tls_error(const struct vs_tls_state *ts, const char *url,
		      const char *curl_msg);

/* The session cookie ("vmware_soap_session=...") with the login it
 * belongs to and that login's time, copied under the lock. The cookie
 * is a credential: never log it. */
void vs_session_get(struct fy_vs_client *c, char *cookie, size_t cookielen,
		    uint64_t *generation, double *login_time);

int vs_login(struct fy_vs_client *c, uint64_t seen_generation);
/* Ends every PrepareForAccess still open (client free). */
void vs_access_end_all(struct fy_vs_client *c);

/* ---- the PropertyCollector --------------------------------------------- */

struct vs_prop_spec {
	const char *type;
	const char *const *paths;  /* NULL-terminated */
};

/* Called for each ObjectContent: obj is its MoRef, props its propSet. */
typedef int (*vs_object_cb)(void *opaque, const struct vs_node *object);

/* RetrievePropertiesEx on one object (view false) or on every object of a
 * ContainerView (view true), then ContinueRetrievePropertiesEx until the
 * last page. A NotAuthenticated fault in a missingSet counts as an expired
 * session. */
int vs_retrieve(struct fy_vs_client *c, const struct fy_vs_moref *obj,
		bool view, const struct vs_prop_spec *specs, size_t n_specs,
		vs_object_cb cb, void *opaque);
/* SearchIndex.FindByInventoryPath: -ENOENT naming what when nothing is
 * there. */
int vs_find_by_inventory_path(struct fy_vs_client *c, const char *path,
			      const char *what, struct fy_vs_moref *out);
/* The value node of property name in an ObjectContent, or NULL. */
const struct vs_node *vs_prop(const struct vs_node *object, const char *name);
/* CreateContainerView(root, types, recursive) and DestroyView. */
int vs_view_create(struct fy_vs_client *c, const char *const *types,
		   struct fy_vs_moref *view);
void vs_view_destroy(struct fy_vs_client *c, const struct fy_vs_moref *view);

/* ---- typed parsers (from trees, network-free) -------------------------- */

/* config.hardware.device (an ArrayOfVirtualDevice) into d, strings in a. */
int vs_parse_devices(const struct vs_node *array, struct vs_arena *a,
		     struct fy_vs_devices *d);
/* A snapshot's config.* properties (fy_vs_snapshot_config) into cfg. */
int vs_parse_vm_config(const struct vs_node *object, struct vs_arena *a,
		       struct fy_vs_vm_config *cfg);
/* The "snapshot" property (VirtualMachineSnapshotInfo) into vm. */
int vs_parse_snapshots(const struct vs_node *info, struct vs_arena *a,
		       struct fy_vs_vm *vm);
/* Fills vm from an ObjectContent of a VirtualMachine. */
int vs_parse_vm(const struct vs_node *object, struct vs_arena *a,
		struct fy_vs_vm *vm);
/* The returnval of QueryChangedDiskAreas. */
struct vs_change_info {
	uint64_t start;
	uint64_t length;
	size_t n;
	const struct vs_node *first_area;
};
int vs_parse_change_info(const struct vs_node *rv, struct vs_change_info *out);
/* Task info: state, progress, error, result. */
struct vs_task_info {
	char state[16];       /* queued, running, success, error */
	int progress;         /* -1 when absent */
	struct fy_vs_moref result;
	bool has_error;
	struct fy_vs_fault fault;
};
int vs_parse_task_info(const struct vs_node *info, struct vs_task_info *out);
/* vimServiceVersions.xml: picks the version to speak. */
int vs_pick_version(const char *data, size_t len,
		    const struct fy_vs_limits *lim, char *out, size_t outlen);
/* Compares dotted versions: <0, 0, >0. */
int vs_version_cmp(const char *a, const char *b);
/* The newest version this library knows that is not newer than v;
 * -ENOTSUP when v is older than 6.5. */
int vs_version_supported(const char *v, char *out, size_t outlen);

/* Copies src into dst of size n, cut if need be, always terminated. */
void vs_copy(char *dst, size_t n, const char *src);
/* Sleeps ms milliseconds. */
void vs_sleep_ms(long ms);
/* Copies a moref. */
void vs_moref_set(struct fy_vs_moref *m, const char *type, const char *value);
bool vs_moref_eq(const struct fy_vs_moref *a, const struct fy_vs_moref *b);
/* A copy of m with type set to def when m has none ("vm-42"). */
struct fy_vs_moref vs_typed(const struct fy_vs_moref *m, const char *def);

#endif
