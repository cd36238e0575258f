/*
 * The VM configuration record (image/vmconfig.c): encode and decode give
 * back the same record, every rule of docs/FORMAT.md refuses what breaks
 * it with a message naming it, broken and hostile bytes are refused before
 * they are believed, a later version is kept as "newer", and manifests
 * carry a record (checked against their disks) or, as written before
 * records existed, none.
 *
 *   test_vmconfig                   runs the checks
 *   test_vmconfig --write-seeds DIR writes fuzz seeds (tests/fuzz)
 */
#include <errno.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "image/image.h"
#include "proto/manifest.pb-c.h"

/* A VM with a bit of everything; disk 2001 is not in the backup. */
static struct fy_vmconfig *sample(void)
{
	struct fy_vmconfig *c = fy_vmconfig_new();

	if (!c)
		exit(1);
	snprintf(c->name, sizeof(c->name), "web01 (prod) \xc3\xa9t\xc3\xa9");
	snprintf(c->guest_id, sizeof(c->guest_id), "rhel9_64Guest");
	snprintf(c->hardware_version, sizeof(c->hardware_version), "vmx-19");
	snprintf(c->firmware, sizeof(c->firmware), "efi");
	c->secure_boot = true;
	c->cpus = 8;
	c->cores_per_socket = 4;
	c->memory_mb = 16384;
	c->n_controllers = 3;
	c->controllers[0] = (struct fy_vmconfig_controller){ 1000, "pvscsi", 0,
							      "noSharing" };
	c->controllers[1] = (struct fy_vmconfig_controller){
		1001, "lsilogic-sas", 1, "physicalSharing" };
	c->controllers[2] = (struct fy_vmconfig_controller){ 15000, "sata", 0,
							      "" };
	c->n_disks = 3;
	c->disks[0] = (struct fy_vmconfig_disk){ 2000, 1000, 0, 1ull << 34,
						  "thin", "persistent", true, 0 };
	c->disks[1] = (struct fy_vmconfig_disk){
		2001, 1000, 1, 1ull << 30, "thick-eager",
		"independent_persistent", false, 0 };
	c->disks[2] = (struct fy_vmconfig_disk){ 2016, 1001, 0, 1ull << 31,
						  "thick-lazy", "persistent",
						  true, 1 };
	c->n_nics = 2;
	c->nics[0] = (struct fy_vmconfig_nic){ 4000, "vmxnet3", "VM Network",
						"manual", "00:50:56:aa:bb:01" };
	c->nics[1] = (struct fy_vmconfig_nic){ 4001, "e1000e", "dvportgroup-21",
						"generated", "" };
	c->n_cdroms = 1;
	c->cdroms[0] = (struct fy_vmconfig_cdrom){ 16000, 15000, 0 };
	c->n_extra = 2;
	snprintf(c->extra[0].key, FY_VMCONFIG_KEY_MAX, "disk.EnableUUID");
	snprintf(c->extra[0].value, FY_VMCONFIG_VALUE_MAX, "TRUE");
	snprintf(c->extra[1].key, FY_VMCONFIG_KEY_MAX, "svga.present");
	snprintf(c->extra[1].value, FY_VMCONFIG_VALUE_MAX, "FALSE");
	return c;
}

static void test_roundtrip(void)
{
	struct fy_vmconfig *c = sample(), *d = NULL;
	uint8_t *buf = NULL;
	size_t len = 0;

	CHECK_RC(fy_vmconfig_check(c));
	CHECK_RC(fy_vmconfig_encode(c, &buf, &len));
	CHECK(buf && len > 100 && len < 1024);
	if (buf)
		CHECK_RC(fy_vmconfig_decode(buf, len, &d));
	/* Both were zeroed before filling: equal records are equal bytes. */
	CHECK(d && !d->newer && memcmp(c, d, sizeof(*c)) == 0);
	CHECK_RC(fy_vmconfig_check_backup(c, 2));
	CHECK(fy_vmconfig_check_backup(c, 1) == -EBADMSG &&
	      strstr(fy_err_msg(), "disk 2016 is backup disk 1, but the "
				   "backup has 1 disks"));
	fy_vmconfig_free(d);
	fy_vmconfig_free(c);
	free(buf);
	fy_vmconfig_free(NULL);
	CHECK(fy_vmconfig_extra_allowed("disk.EnableUUID"));
	CHECK(!fy_vmconfig_extra_allowed("guestinfo.userdata"));
	CHECK(!fy_vmconfig_extra_allowed("ctkEnabled"));
	/* VMX keys are case-insensitive; the record keeps the list's
	 * spelling. */
	CHECK(fy_vmconfig_extra_canonical("disk.enableUUID") &&
	      !strcmp(fy_vmconfig_extra_canonical("disk.enableUUID"),
		      "disk.EnableUUID"));
	CHECK(!fy_vmconfig_extra_canonical("guestinfo.ovfEnv"));
	CHECK(fy_vmconfig_text_ok("web01 \xc3\xa9t\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
	CHECK(!fy_vmconfig_text_ok("\xc2\x85"));
	CHECK(!fy_vmconfig_text_ok("\xf4\x90\x80\x80"));
	CHECK(!fy_vmconfig_text_ok("\xe2\x82"));
}

/* One rule broken at a time: encode refuses it (EINVAL) and says which. */
typedef void (*mutator)(struct fy_vmconfig *c);

static void expect_refused(mutator m, const char *what)
{
	struct fy_vmconfig *c = sample();
	uint8_t *buf = (uint8_t *)1;
	size_t len = 1;
	int rc;

	m(c);
	CHECK(fy_vmconfig_check(c) == -EBADMSG);
	rc = fy_vmconfig_encode(c, &buf, &len);
	CHECK(rc == -EINVAL && buf == NULL && len == 0);
	if (!strstr(fy_err_msg(), what)) {
		fprintf(stderr, "expected \"%s\" in: %s\n", what, fy_err_msg());
		CHECK(!"message");
	}
	fy_vmconfig_free(c);
}

static void no_cpus(struct fy_vmconfig *c) { c->cpus = 0; }
static void many_cpus(struct fy_vmconfig *c) { c->cpus = FY_VMCONFIG_CPUS_MAX + 1; }
static void odd_cores(struct fy_vmconfig *c) { c->cores_per_socket = 3; }
static void no_memory(struct fy_vmconfig *c) { c->memory_mb = 0; }
static void huge_memory(struct fy_vmconfig *c) { c->memory_mb = FY_VMCONFIG_MEMORY_MB_MAX + 1; }
static void uefi(struct fy_vmconfig *c) { strcpy(c->firmware, "uefi"); }
static void bios_secure(struct fy_vmconfig *c) { strcpy(c->firmware, "bios"); }
static void no_name(struct fy_vmconfig *c) { c->name[0] = 0; }
static void name_newline(struct fy_vmconfig *c) { strcpy(c->name, "a\nb"); }
static void name_unterminated(struct fy_vmconfig *c) { memset(c->name, 'x', sizeof(c->name)); }
static void guest_space(struct fy_vmconfig *c) { strcpy(c->guest_id, "other linux"); }
static void ctrl_word(struct fy_vmconfig *c) { strcpy(c->controllers[0].type, "pv/scsi"); }
static void ctrl_empty(struct fy_vmconfig *c) { c->controllers[1].type[0] = 0; }
static void ctrl_bus(struct fy_vmconfig *c) { c->controllers[1].bus = 64; }
static void dup_key(struct fy_vmconfig *c) { c->nics[1].key = 2016; }
static void neg_key(struct fy_vmconfig *c) { c->cdroms[0].key = -1; }
static void orphan_disk(struct fy_vmconfig *c) { c->disks[1].controller_key = 1002; }
static void orphan_cdrom(struct fy_vmconfig *c) { c->cdroms[0].controller_key = 200; }
static void high_unit(struct fy_vmconfig *c) { c->disks[2].unit = 64; }
static void same_slot(struct fy_vmconfig *c) { c->disks[1].unit = 0; }
static void cdrom_on_disk(struct fy_vmconfig *c) { c->cdroms[0].controller_key = 1001; }
static void huge_disk(struct fy_vmconfig *c) { c->disks[0].capacity = FY_DISK_SIZE_MAX + 1; }
static void no_mode(struct fy_vmconfig *c) { c->disks[0].mode[0] = 0; }
static void twice_in_backup(struct fy_vmconfig *c) { c->disks[2].backup_disk = 0; }
static void stray_index(struct fy_vmconfig *c) { c->disks[1].backup_disk = 3; }
static void far_index(struct fy_vmconfig *c) { c->disks[2].backup_disk = FY_DISKS_MAX; }
static void upper_mac(struct fy_vmconfig *c) { strcpy(c->nics[0].mac, "00:50:56:AA:BB:01"); }
static void short_mac(struct fy_vmconfig *c) { strcpy(c->nics[0].mac, "00:50:56"); }
static void net_tab(struct fy_vmconfig *c) { strcpy(c->nics[0].network, "VM\tNetwork"); }
static void no_adapter(struct fy_vmconfig *c) { c->nics[0].adapter[0] = 0; }
static void extra_space(struct fy_vmconfig *c) { strcpy(c->extra[0].key, "disk EnableUUID"); }
static void extra_twice(struct fy_vmconfig *c) { strcpy(c->extra[1].key, "disk.EnableUUID"); }
static void extra_ctl(struct fy_vmconfig *c) { strcpy(c->extra[1].value, "a\x1b[2Jb"); }
static void many_disks(struct fy_vmconfig *c) { c->n_disks = FY_VMCONFIG_DISKS_MAX + 1; }
static void many_nics(struct fy_vmconfig *c) { c->n_nics = FY_VMCONFIG_NICS_MAX + 1; }
static void old_version(struct fy_vmconfig *c) { c->version = 0; }
/* A firmware full of escapes must not come back in the message. */
static void fw_escape(struct fy_vmconfig *c) { strcpy(c->firmware, "\x1b[31m\n"); }
static void extra_secret(struct fy_vmconfig *c) { strcpy(c->extra[1].key, "guestinfo.password"); }
static void extra_case(struct fy_vmconfig *c) { strcpy(c->extra[0].key, "disk.enableUUID"); }
static void ctrl_bogus(struct fy_vmconfig *c) { strcpy(c->controllers[0].type, "totally-bogus"); }
static void sata_shared(struct fy_vmconfig *c) { strcpy(c->controllers[2].sharing, "noSharing"); }
static void scsi_unshared(struct fy_vmconfig *c) { c->controllers[0].sharing[0] = 0; }
static void odd_sharing(struct fy_vmconfig *c) { strcpy(c->controllers[0].sharing, "sharing"); }
static void odd_provisioning(struct fy_vmconfig *c) { strcpy(c->disks[0].provisioning, "sparse"); }
static void odd_adapter(struct fy_vmconfig *c) { strcpy(c->nics[0].adapter, "rtl8139"); }
static void odd_mac_type(struct fy_vmconfig *c) { strcpy(c->nics[0].mac_type, "static"); }
static void name_c1(struct fy_vmconfig *c) { strcpy(c->name, "a\xc2\x9b" "31mb"); }
static void name_latin1(struct fy_vmconfig *c) { strcpy(c->name, "caf\xe9"); }
static void name_overlong(struct fy_vmconfig *c) { strcpy(c->name, "a\xc0\xaf" "b"); }
static void net_surrogate(struct fy_vmconfig *c) { strcpy(c->nics[0].network, "a\xed\xa0\x80"); }

static void test_rules(void)
{
	expect_refused(no_cpus, "0 CPUs is outside 1..768");
	expect_refused(many_cpus, "769 CPUs");
	expect_refused(odd_cores, "3 cores per socket do not divide 8 CPUs");
	expect_refused(no_memory, "memory of 0 MB");
	expect_refused(huge_memory, "memory of");
	expect_refused(uefi, "firmware is neither bios nor efi");
	expect_refused(fw_escape, "firmware is neither bios nor efi");
	CHECK(!strchr(fy_err_msg(), '\x1b') && !strchr(fy_err_msg(), '\n'));
	expect_refused(extra_secret, "extraConfig guestinfo.password is not "
				     "on the allow-list");
	expect_refused(extra_case, "extraConfig disk.enableUUID is not on the "
				   "allow-list");
	expect_refused(ctrl_bogus, "controller 1000: type totally-bogus is not");
	expect_refused(sata_shared, "controller 15000: sharing 'noSharing' "
				    "does not go with type sata");
	expect_refused(scsi_unshared, "controller 1000: sharing '' does not go");
	expect_refused(odd_sharing, "controller 1000: sharing 'sharing'");
	expect_refused(odd_provisioning, "disk 2000: provisioning sparse is "
					 "not");
	expect_refused(odd_adapter, "network adapter 4000: adapter rtl8139");
	expect_refused(odd_mac_type, "MAC type static is not");
	expect_refused(name_c1, "the VM's name must be");
	expect_refused(name_latin1, "the VM's name must be");
	expect_refused(name_overlong, "the VM's name must be");
	expect_refused(net_surrogate, "network adapter 4000: network name");
	expect_refused(bios_secure, "secure boot needs efi firmware");
	expect_refused(no_name, "the VM's name must be 1 to 511 bytes");
	expect_refused(name_newline, "without control characters");
	expect_refused(name_unterminated, "the VM's name must be");
	expect_refused(guest_space, "guest OS id and hardware version");
	expect_refused(ctrl_word, "controller 1000: type");
	expect_refused(ctrl_empty, "controller 1001: type");
	expect_refused(ctrl_bus, "controller 1001 on bus 64");
	expect_refused(dup_key, "device key 2016 is used twice");
	expect_refused(neg_key, "device key -1 is negative");
	expect_refused(orphan_disk, "disk 2001 is on controller 1002, which "
				    "is not listed");
	expect_refused(orphan_cdrom, "CD-ROM 16000 is on controller 200");
	expect_refused(high_unit, "disk 2016 on unit 64, the last is 63");
	expect_refused(same_slot, "two devices on unit 0 of controller 1000");
	expect_refused(cdrom_on_disk, "two devices on unit 0 of controller "
				      "1001");
	expect_refused(huge_disk, "disk 2000 capacity");
	expect_refused(no_mode, "disk 2000: provisioning and mode");
	expect_refused(twice_in_backup, "disks 2000 and 2016 are both backup "
					"disk 0");
	expect_refused(stray_index, "disk 2001 is not in the backup but names "
				    "backup disk 3");
	expect_refused(far_index, "disk 2016: backup disk 256, at most 255");
	expect_refused(upper_mac, "network adapter 4000: MAC address");
	expect_refused(short_mac, "network adapter 4000: MAC address");
	expect_refused(net_tab, "network adapter 4000: network name");
	expect_refused(no_adapter, "network adapter 4000: adapter and MAC");
	expect_refused(extra_space, "extraConfig key 0 is not");
	expect_refused(extra_twice, "extraConfig disk.EnableUUID is listed "
				    "twice");
	expect_refused(extra_ctl, "extraConfig svga.present: value");
	expect_refused(many_disks, "513 disks");
	expect_refused(many_nics, "17 NICs");
	expect_refused(old_version, "version 0, this build writes 1");
}

static void expect_bad_bytes(const void *data, size_t len, const char *what)
{
	struct fy_vmconfig *c = (struct fy_vmconfig *)1;
	int rc = fy_vmconfig_decode(data, len, &c);

	CHECK(rc == -EBADMSG && c == NULL);
	if (!strstr(fy_err_msg(), what)) {
		fprintf(stderr, "expected \"%s\" in: %s\n", what, fy_err_msg());
		CHECK(!"message");
	}
	if (rc == 0)
		fy_vmconfig_free(c);
}

/* Packs a VmConfig written field by field, as a hostile peer would. */
static uint8_t *pack(const Ferry__VmConfig *m, size_t *len)
{
	uint8_t *buf;

	*len = ferry__vm_config__get_packed_size(m);
	buf = malloc(*len ? *len : 1);
	if (!buf)
		exit(1);
	ferry__vm_config__pack(m, buf);
	return buf;
}

static void test_broken_bytes(void)
{
	static uint8_t big[FY_VMCONFIG_MAX + 1];
	static const uint8_t garbage[] = { 0xff, 0xff, 0xff, 0xff };
	static const uint8_t truncated_string[] = { 0x12, 0x10, 'a' };
	static const uint8_t group_wire_type[] = { 0x0b, 0x0c };
	Ferry__VmConfig m = FERRY__VM_CONFIG__INIT;
	Ferry__VmController ks[FY_VMCONFIG_CONTROLLERS_MAX + 1], *kp[FY_VMCONFIG_CONTROLLERS_MAX + 1];
	Ferry__VmDisk d = FERRY__VM_DISK__INIT, *dp[FY_VMCONFIG_DISKS_MAX + 1];
	struct fy_vmconfig *c = sample(), *out = NULL;
	char long_word[FY_VMCONFIG_WORD_MAX + 1];
	uint8_t *buf = NULL, *enc = NULL;
	size_t len = 0, enc_len = 0, i, cut;

	expect_bad_bytes("", 0, "record of 0 bytes is outside 1..65536");
	expect_bad_bytes(big, sizeof(big), "record of 65537 bytes");
	expect_bad_bytes(garbage, sizeof(garbage), "not a VmConfig message");
	expect_bad_bytes(truncated_string, sizeof(truncated_string),
			 "malformed field at byte 0");
	expect_bad_bytes(group_wire_type, sizeof(group_wire_type),
			 "malformed field");

	/* No version at all. */
	m.name = "x";
	buf = pack(&m, &len);
	expect_bad_bytes(buf, len, "the record has no version");
	free(buf);

	/* Counted on the wire before protobuf-c allocates anything. */
	m.version = 1;
	for (i = 0; i <= FY_VMCONFIG_CONTROLLERS_MAX; i++) {
		ferry__vm_controller__init(&ks[i]);
		ks[i].key = (int32_t)i;
		kp[i] = &ks[i];
	}
	m.controllers = kp;
	m.n_controllers = FY_VMCONFIG_CONTROLLERS_MAX + 1;
	buf = pack(&m, &len);
	expect_bad_bytes(buf, len, "more than 32 controllers");
	free(buf);
	m.n_controllers = 0;
	for (i = 0; i <= FY_VMCONFIG_DISKS_MAX; i++)
		dp[i] = &d;
	m.disks = dp;
	m.n_disks = FY_VMCONFIG_DISKS_MAX + 1;
	buf = pack(&m, &len);
	expect_bad_bytes(buf, len, "more than 512 disks");
	free(buf);
	m.n_disks = 0;

	/* A string longer than its field. */
	memset(long_word, 'a', FY_VMCONFIG_WORD_MAX);
	long_word[FY_VMCONFIG_WORD_MAX] = 0;
	m.guest_id = long_word;
	buf = pack(&m, &len);
	expect_bad_bytes(buf, len, "guest OS id of 64 bytes is longer than 63");
	free(buf);
	m.guest_id = "";

	/* Well-formed protobuf, but a record that breaks a rule. */
	m.cpus = 2;
	m.memory_mb = 64;
	m.firmware = "efi";
	m.secure_boot = true;
	m.name = "x";
	buf = pack(&m, &len);
	CHECK_RC(fy_vmconfig_decode(buf, len, &out));
	CHECK(out && out->cpus == 2 && out->secure_boot);
	fy_vmconfig_free(out);
	out = NULL;
	free(buf);
	m.firmware = "bios";
	buf = pack(&m, &len);
	expect_bad_bytes(buf, len, "secure boot needs efi firmware");
	free(buf);

	/* A later version is kept, not interpreted: its fields may mean
	 * something else (here they break version 1's rules). */
	m.version = 2;
	m.cpus = 0;
	buf = pack(&m, &len);
	CHECK_RC(fy_vmconfig_decode(buf, len, &out));
	CHECK(out && out->newer && out->version == 2 && out->cpus == 0 &&
	      !out->name[0]);
	CHECK_RC(fy_vmconfig_check_backup(out, 0));
	fy_vmconfig_free(out);
	out = NULL;
	free(buf);

	/* Every prefix of a good record: refused with a message, or (cut at
	 * a field boundary) a record that still keeps every rule. */
	CHECK_RC(fy_vmconfig_encode(c, &enc, &enc_len));
	for (cut = 1; enc && cut < enc_len; cut++) {
		int rc = fy_vmconfig_decode(enc, cut, &out);

		CHECK(rc == 0 || rc == -EBADMSG);
		if (rc == 0)
			CHECK(out && fy_vmconfig_check(out) == 0);
		fy_vmconfig_free(out);
		out = NULL;
	}
	/* Flipped bytes: never a crash, never a record breaking a rule. */
	for (i = 0; enc && i < enc_len; i++) {
		uint8_t saved = enc[i];
		int rc;

		enc[i] ^= 0xa5;
		rc = fy_vmconfig_decode(enc, enc_len, &out);
		CHECK(rc == 0 || rc == -EBADMSG);
		if (rc == 0 && !out->newer)
			CHECK(fy_vmconfig_check(out) == 0);
		fy_vmconfig_free(out);
		out = NULL;
		enc[i] = saved;
	}
	free(enc);
	fy_vmconfig_free(c);
}

/* ---- in manifests ------------------------------------------------------ */

static char dir[2048], root[4096];

static int rm_one(const char *path, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* A manifest of one empty disk (no map) around a given record, with a
 * good checksum: only the record's own checks can object. */
static uint8_t *manifest_with(const void *rec, size_t rec_len, size_t *len)
{
	Ferry__ManifestHeader h = FERRY__MANIFEST_HEADER__INIT;
	Ferry__ManifestDisk d = FERRY__MANIFEST_DISK__INIT, *dp = &d;
	size_t hl;
	uint8_t *buf;

	h.id = "20261205T000000Z-0badc0de";
	h.source = "vm-two-disks";
	h.source_kind = "vm";
	h.block_size = 1u << 20;
	h.n_disks = 1;
	h.disks = &dp;
	h.vm_config.data = (uint8_t *)rec;
	h.vm_config.len = rec_len;
	hl = ferry__manifest_header__get_packed_size(&h);
	*len = 16 + hl + 32;
	buf = malloc(*len);
	if (!buf)
		exit(1);
	memcpy(buf, "FYMANIF1", 8);
	put_be32(buf + 8, 1);
	put_be32(buf + 12, (uint32_t)hl);
	ferry__manifest_header__pack(&h, buf + 16);
	fy_sha256(buf, *len - 32, buf + *len - 32);
	return buf;
}

static void test_manifest_parse(void)
{
	static const uint8_t garbage[] = { 0x08, 0x01, 0xff };
	struct fy_vmconfig *c = sample();
	struct fy_manifest *m = NULL;
	uint8_t *rec = NULL, *buf;
	size_t rec_len = 0, len;

	/* One backup disk: the sample's disk 2016 (backup disk 1) is not
	 * there. */
	c->disks[2].in_backup = false;
	c->disks[2].backup_disk = 0;
	CHECK_RC(fy_vmconfig_encode(c, &rec, &rec_len));
	buf = manifest_with(rec, rec_len, &len);
	CHECK_RC(fy_manifest_parse_mem(buf, len, &m));
	CHECK(m && m->vm_config_len == rec_len &&
	      !memcmp(m->vm_config, rec, rec_len));
	fy_manifest_free(m);
	m = NULL;
	free(buf);
	free(rec);
	rec = NULL;

	c->disks[2].in_backup = true;
	c->disks[2].backup_disk = 1;
	CHECK_RC(fy_vmconfig_encode(c, &rec, &rec_len));
	buf = manifest_with(rec, rec_len, &len);
	CHECK(fy_manifest_parse_mem(buf, len, &m) == -EBADMSG && !m);
	CHECK(strstr(fy_err_msg(), "manifest in memory: VM configuration: "
				   "disk 2016 is backup disk 1, but the "
				   "backup has 1 disks") != NULL);
	free(buf);

	buf = manifest_with(garbage, sizeof(garbage), &len);
	CHECK(fy_manifest_parse_mem(buf, len, &m) == -EBADMSG && !m);
	CHECK(strstr(fy_err_msg(), "manifest in memory: VM configuration: not "
				   "a VmConfig message") != NULL);
	free(buf);

	/* Without a record: what every manifest before records was. */
	buf = manifest_with(NULL, 0, &len);
	CHECK_RC(fy_manifest_parse_mem(buf, len, &m));
	CHECK(m && !m->vm_config && m->vm_config_len == 0);
	fy_manifest_free(m);
	free(buf);
	free(rec);
	fy_vmconfig_free(c);
}

static void build(struct fy_repo *repo, const char *id, const void *rec,
		  size_t rec_len, int want_set, int want_finish)
{
	struct fy_manifest hdr = { 0 };
	struct fy_manifest_disk d = { 0 };
	struct fy_manifest_builder *b = NULL;
	struct fy_manifest *m = NULL;
	uint8_t hole[1][FY_DIGEST_LEN] = { { 0 } };
	char path[8192];
	uint32_t i;
	int rc;

	snprintf(hdr.id, sizeof(hdr.id), "%s", id);
	snprintf(hdr.source, sizeof(hdr.source), "vm-two-disks");
	snprintf(hdr.source_kind, sizeof(hdr.source_kind), "vm");
	hdr.block_size = 1u << 20;
	CHECK_RC(fy_manifest_builder_new(fy_repo_tmpdir(repo), &hdr, &b));
	if (!b)
		return;
	for (i = 0; i < 2; i++) {
		d.index = i;
		d.size = 1u << 20;
		CHECK_RC(fy_manifest_builder_begin_disk(b, &d));
		CHECK_RC(fy_manifest_builder_add(b, i, 0,
			 (const uint8_t (*)[FY_DIGEST_LEN])hole, 1));
		CHECK_RC(fy_manifest_builder_end_disk(b, i));
	}
	rc = fy_manifest_builder_set_vm_config(b, rec, rec_len);
	CHECK(rc == want_set);
	rc = fy_manifest_builder_finish(b, path, sizeof(path));
	CHECK(rc == want_finish);
	if (rc == 0) {
		CHECK_RC(fy_repo_backup_commit(repo, path, id));
		CHECK_RC(fy_repo_backup_open(repo, id, &m));
		if (want_set == 0)
			CHECK(m && m->vm_config_len == rec_len &&
			      !memcmp(m->vm_config, rec, rec_len));
		else
			CHECK(m && !m->vm_config);
		fy_manifest_free(m);
	}
	fy_manifest_builder_free(b);
}

static void test_builder(void)
{
	static const uint8_t garbage[] = { 0xff };
	struct fy_repo *repo = NULL;
	struct fy_vmconfig *c = sample();
	uint8_t *rec = NULL;
	size_t rec_len = 0;
	char id[FY_ID_MAX];

	CHECK_RC(fy_repo_init(root));
	CHECK_RC(fy_repo_open(root, 0, &repo));
	if (!repo)
		return;
	CHECK_RC(fy_vmconfig_encode(c, &rec, &rec_len));
	fy_repo_new_backup_id(id);
	build(repo, id, rec, rec_len, 0, 0);
	/* Garbage is refused when it is given; the backup goes on without. */
	fy_repo_new_backup_id(id);
	build(repo, id, garbage, sizeof(garbage), -EBADMSG, 0);
	/* Backup disk 2 of a two-disk backup: refused at finish. */
	c->disks[1].in_backup = true;
	c->disks[1].backup_disk = 2;
	free(rec);
	rec = NULL;
	CHECK_RC(fy_vmconfig_encode(c, &rec, &rec_len));
	fy_repo_new_backup_id(id);
	build(repo, id, rec, rec_len, 0, -EINVAL);
	CHECK(strstr(fy_err_msg(), "disk 2001 is backup disk 2, but the "
				   "backup has 2 disks") != NULL);
	free(rec);
	fy_vmconfig_free(c);
	fy_repo_close(repo);
}

/* A VM backup written before records existed (tests/data/repo-vm-v1, by
 * this tree before the record): it opens, without a record. */
static void test_old_manifest(void)
{
	struct fy_manifest *m = NULL;

	CHECK_RC(fy_manifest_open(FY_TEST_DATA "/repo-vm-v1/backups/"
				  "20261205T070940Z-afba562e.manifest", &m));
	CHECK(m && !strcmp(m->source_kind, "vm") && m->disk_count == 1 &&
	      !m->vm_config && m->vm_config_len == 0);
	fy_manifest_free(m);
}

/* ---- fuzz seeds -------------------------------------------------------- */

static int write_file(const char *dirname, const char *name, const void *p,
		      size_t n)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dirname, name);
	f = fopen(path, "wb");
	if (!f || fwrite(p, 1, n, f) != n || fclose(f)) {
		perror(path);
		return 1;
	}
	return 0;
}

static int write_seeds(const char *out)
{
	Ferry__VmConfig m = FERRY__VM_CONFIG__INIT;
	struct fy_vmconfig *c = sample();
	uint8_t *rec = NULL, *buf;
	size_t rec_len = 0, len;
	int rc = 0;

	if (fy_vmconfig_encode(c, &rec, &rec_len) < 0)
		return 1;
	rc |= write_file(out, "sample.vmconfig", rec, rec_len);
	m.version = 7;
	m.name = "from the future";
	buf = pack(&m, &len);
	rc |= write_file(out, "newer.vmconfig", buf, len);
	free(buf);
	c->disks[2].in_backup = false;
	c->disks[2].backup_disk = 0;
	free(rec);
	rec = NULL;
	if (fy_vmconfig_encode(c, &rec, &rec_len) < 0)
		return 1;
	buf = manifest_with(rec, rec_len, &len);
	rc |= write_file(out, "vm_record.manifest", buf, len);
	free(buf);
	free(rec);
	fy_vmconfig_free(c);
	return rc;
}

int main(int argc, char **argv)
{
	const char *base = getenv("TMPDIR");

	if (argc == 3 && !strcmp(argv[1], "--write-seeds"))
		return write_seeds(argv[2]);
	snprintf(dir, sizeof(dir), "%s/test_vmconfig.XXXXXX",
		 base && *base ? base : ".");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(root, sizeof(root), "%s/repo", dir);
	test_roundtrip();
	test_rules();
	test_broken_bytes();
	test_manifest_parse();
	test_builder();
	test_old_manifest();
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	CHECK_DONE();
}
