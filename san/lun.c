/*
 * Finding a datastore extent's LUN on the proxy: the block device whose
 * SCSI identity (sysfs wwid, or an NAA designator of VPD page 0x83) is the
 * extent's NAA id. The sysfs and /dev roots are configurable, as hotadd's
 * are, so tests point them at an emulated tree of loop devices.
 */
#include "san/san.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define NAA_MAX 64

const char *const fy_san_config_keys[] = {
	"ferry.san.sysfsRoot",
	"ferry.san.devRoot",
	NULL,
};

/* Reads a small sysfs file; trailing whitespace removed. Returns its
 * length or -errno. */
static ssize_t read_small(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	if (n < 0) {
		n = -errno;
		close(fd);
		return n;
	}
	close(fd);
	buf[n] = '\0';
	while (n > 0 && isspace((unsigned char)buf[n - 1]))
		buf[--n] = '\0';
	return n;
}

/* "naa.60A98000..." or "60a98000..." to lower-case hex; "" if not hex. */
static void naa_normalize(const char *in, char *out, size_t len)
{
	size_t i = 0;

	if (!strncasecmp(in, "naa.", 4))
		in += 4;
	for (; *in && i + 1 < len; in++) {
		if (!isxdigit((unsigned char)*in)) {
			i = 0;
			break;
		}
		out[i++] = (char)tolower((unsigned char)*in);
	}
	out[i] = '\0';
}

/* Whether VPD page 0x83 (binary) has an NAA designator equal to naa. */
static bool vpd83_has(const uint8_t *p, size_t n, const char *naa)
{
	size_t off = 4, len;

	if (n < 4 || p[1] != 0x83)
		return false;
	len = (size_t)p[2] << 8 | p[3];
	if (len + 4 < n)
		n = len + 4;
	while (off + 4 <= n) {
		size_t dlen = p[off + 3], i;
		char hex[2 * 255 + 1];

		if (off + 4 + dlen > n)
			break;
		/* designator type 3 = NAA, code set 1 = binary */
		if ((p[off + 1] & 0xf) == 3 && (p[off] & 0xf) == 1 && dlen <= 32) {
			for (i = 0; i < dlen; i++)
				snprintf(hex + 2 * i, 3, "%02x", p[off + 4 + i]);
			if (!strcmp(hex, naa))
				return true;
		}
		off += 4 + dlen;
	}
	return false;
}

static bool dev_matches(const char *dir, const char *name, const char *naa)
{
	char path[PATH_MAX + 300], buf[512], norm[NAA_MAX + 1];
	uint8_t vpd[1024];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%s/device/wwid", dir, name);
	if (read_small(path, buf, sizeof(buf)) > 0) {
		naa_normalize(buf, norm, sizeof(norm));
		if (norm[0] && !strcmp(norm, naa))
			return true;
	}
	snprintf(path, sizeof(path), "%s/%s/device/vpd_pg83", dir, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, vpd, sizeof(vpd));
	close(fd);
	return n > 0 && vpd83_has(vpd, (size_t)n, naa);
}

int fy_san_find_lun(const char *sysfs_root, const char *dev_root,
		    const char *naa_in, uint64_t min_bytes, char *dev,
		    size_t devlen)
{
	char dir[PATH_MAX], path[PATH_MAX + 300], buf[64], naa[NAA_MAX + 1];
	char found[2][256] = { "", "" };
	const char *sroot = sysfs_root && strcmp(sysfs_root, "/") ? sysfs_root : "";
	const char *droot = dev_root && strcmp(dev_root, "/") ? dev_root : "";
	struct dirent *de;
	unsigned maj, min, matches = 0;
	uint64_t sectors;
	struct stat st;
	DIR *d;

	naa_normalize(naa_in, naa, sizeof(naa));
	if (!naa[0] || strlen(naa) < 16)
		return fy_err_set(-EINVAL, "san: '%s' is not an NAA id", naa_in);
	snprintf(dir, sizeof(dir), "%s/sys/block", sroot);
	d = opendir(dir);
	if (!d)
		return fy_err_set(-errno, "san: %s: %s", dir, strerror(errno));
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.' || !dev_matches(dir, de->d_name, naa))
			continue;
		if (matches < 2)
			snprintf(found[matches], sizeof(found[0]), "%s",
				 de->d_name);
		matches++;
	}
	closedir(d);
	if (matches == 0)
		return fy_err_set(-ENOENT, "san: LUN naa.%s is not visible on "
				  "this proxy (no disk in %s has it as wwid or "
				  "in VPD page 0x83): zone or map it to the "
				  "proxy, read-only", naa, dir);
	if (matches > 1)
		return fy_err_set(-EEXIST, "san: LUN naa.%s is seen %u times "
				  "(%s, %s%s): several paths without multipath; "
				  "Ferry will not guess which to read", naa,
				  matches, found[0], found[1],
				  matches > 2 ? ", ..." : "");
	snprintf(path, sizeof(path), "%s/%s/size", dir, found[0]);
	if (read_small(path, buf, sizeof(buf)) <= 0 ||
	    sscanf(buf, "%" SCNu64, &sectors) != 1)
		return fy_err_set(-EIO, "san: %s unreadable", path);
	if (sectors * 512 < min_bytes)
		return fy_err_set(-EINVAL, "san: LUN naa.%s (%s) is %" PRIu64
				  " bytes, the datastore's extent needs %"
				  PRIu64 ": not the LUN the datastore was made "
				  "on, or it was not rescanned after growing",
				  naa, found[0], sectors * 512, min_bytes);
	snprintf(path, sizeof(path), "%s/%s/dev", dir, found[0]);
	if (read_small(path, buf, sizeof(buf)) <= 0 ||
	    sscanf(buf, "%u:%u", &maj, &min) != 2)
		return fy_err_set(-EIO, "san: %s unreadable", path);
	snprintf(dev, devlen, "%s/dev/%s", droot, found[0]);
	if (stat(dev, &st) < 0)
		return fy_err_set(-errno, "san: %s: %s", dev, strerror(errno));
	if (!S_ISBLK(st.st_mode) || major(st.st_rdev) != maj ||
	    minor(st.st_rdev) != min)
		return fy_err_set(-EIO, "san: %s is not block device %u:%u", dev,
				  maj, min);
	return 0;
}

static int dev_pread(void *opaque, void *buf, size_t len, uint64_t offset)
{
	ssize_t n = pread(*(int *)opaque, buf, len, (off_t)offset);

	return n == (ssize_t)len ? 0 : n < 0 ? -errno : -EIO;
}

bool fy_san_any_vmfs_lun(const char *sysfs_root, const char *dev_root,
			 char *why, size_t whylen)
{
	const char *sroot = sysfs_root && strcmp(sysfs_root, "/") ? sysfs_root : "";
	const char *droot = dev_root && strcmp(dev_root, "/") ? dev_root : "";
	char dir[PATH_MAX], node[PATH_MAX + 300], path[PATH_MAX + 300], buf[64];
	struct dirent *de;
	unsigned disks = 0;
	bool found = false;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/sys/block", sroot);
	d = opendir(dir);
	if (!d) {
		snprintf(why, whylen, "%s: %s", dir, strerror(errno));
		return false;
	}
	while (!found && (de = readdir(d))) {
		struct fy_vmfs_lun l;
		uint64_t sectors, off, len;
		int fd;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s/size", dir, de->d_name);
		if (read_small(path, buf, sizeof(buf)) <= 0 ||
		    sscanf(buf, "%" SCNu64, &sectors) != 1 || sectors == 0)
			continue;
		snprintf(node, sizeof(node), "%s/dev/%s", droot, de->d_name);
		fd = open(node, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		disks++;
		l = (struct fy_vmfs_lun){ &fd, sectors * 512, node, dev_pread };
		found = fy_vmfs_find_partition(&l, &off, &len) == 0;
		close(fd);
	}
	closedir(d);
	if (!found)
		snprintf(why, whylen, "no VMFS LUN is visible on this proxy (%u "
			 "disks in %s, none with a VMFS partition): give the "
			 "proxy read-only access to the datastores' LUNs "
			 "(docs/SAN.md)", disks, dir);
	fy_err_clear();
	return found;
}
