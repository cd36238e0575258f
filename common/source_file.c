/*
 * The local file / block device source. Reads go through libaio with
 * O_DIRECT so a full disk backup neither pollutes nor waits on the page
 * cache; filesystems that refuse O_DIRECT (tmpfs) are read with pread,
 * and so is a source opened with the read cache on (EnableCache).
 * Up to queue_depth requests are in flight, refilled as each completes;
 * with two batches started (fy_source_start) the second one's requests
 * follow the first one's without the queue draining in between.
 * A source is used by one thread at a time.
 */
#include "common/common.h"

#include <errno.h>
#include <fcntl.h>
#include <libaio.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

/* O_DIRECT needs the logical block size (512 or 4096); 4096 suits both. */
#define FILE_ALIGN 4096
#define DEFAULT_QUEUE_DEPTH 16
#define MAX_QUEUE_DEPTH 1024
#define DEFAULT_IO_SIZE (1u << 20)
#define MAX_IO_SIZE (64u << 20)
/* Retries of a request that returned EAGAIN or made no progress. */
#define MAX_STALLS 8

/* A batch started and not yet waited for. */
struct batch {
	struct fy_io *ios;
	size_t n;
	size_t next_io;	   /* the io the next piece comes from */
	uint64_t next_pos; /* where in it the next piece starts */
	size_t busy;	   /* its pieces held by requests */
	int first_error;
	/* first_error's message, kept while another batch is read. */
	char msg[FY_ERR_MAX];
};

/* One libaio request: a piece of at most io_size of one fy_io. */
struct request {
	struct iocb iocb;
	struct batch *batch;
	struct fy_io *io;
	uint64_t pos; /* next file offset to read */
	uint64_t end; /* end of the piece, never beyond the source size */
	unsigned stalls;
	bool direct;   /* submitted while the fd had O_DIRECT */
	bool inflight; /* the kernel owns io->buf until this clears */
	struct request *next_free;
};

struct file_source {
	struct fy_source base; /* first: the table's functions cast back */
	int fd;
	bool direct;
	bool cached;  /* EnableCache: page cache with readahead hints */
	bool use_aio; /* false when buffered, or after aio broke down */
	unsigned queue_depth;
	size_t io_size;
	io_context_t aio;
	struct request *reqs;	 /* queue_depth of them */
	struct iocb **ready;	 /* built, waiting for io_submit */
	struct io_event *events; /* queue_depth of them */
	struct request *free;
	size_t nready;
	size_t inflight;
	/*
	 * The batches started and not yet waited for, oldest first, in a
	 * ring. Free requests take the oldest batch's pieces first, then the
	 * next one's: while one batch finishes, the next keeps the queue full.
	 */
	struct batch started[FY_SOURCE_MAX_STARTED];
	unsigned oldest, nstarted;
};

static uint64_t align_down(uint64_t x)
{
	return x & ~(uint64_t)(FILE_ALIGN - 1);
}

static uint64_t align_up(uint64_t x)
{
	return align_down(x + FILE_ALIGN - 1);
}

static char *buf_at(struct fy_io *io, uint64_t pos)
{
	return (char *)io->buf + (pos - io->offset);
}

/* Records an io's failure; the batch's message is its first failure's. */
static void fail(struct file_source *fs, struct batch *b, struct fy_io *io,
		 uint64_t pos, int rc, const char *why)
{
	if (io->result == 0)
		io->result = rc;
	if (b->first_error)
		return;
	b->first_error = rc;
	snprintf(b->msg, sizeof(b->msg), "%s: read of %zu bytes at offset "
		 "%llu failed at offset %llu: %s", fs->base.name, io->len,
		 (unsigned long long)io->offset, (unsigned long long)pos,
		 why ? why : strerror(-rc));
}

/*
 * Some filesystems (FUSE, some network ones) accept O_DIRECT at open and
 * refuse it per request. Clearing the flag keeps the open file, so the
 * rest of the source reads through the page cache.
 */
static int switch_to_buffered(struct file_source *fs)
{
	int flags;

	if (!fs->direct)
		return 0;
	flags = fcntl(fs->fd, F_GETFL);
	if (flags < 0 || fcntl(fs->fd, F_SETFL, flags & ~O_DIRECT) < 0)
		return -errno;
	fs->direct = false;
	fs->use_aio = false;
	fy_warn("%s: O_DIRECT read failed with EINVAL; using buffered reads "
		"from now on", fs->base.name);
	return 0;
}

/*
 * Accounts for res bytes read (or -errno) at *pos of a piece ending at end.
 * Returns 1 when the piece is done, 0 to read again from *pos, or -errno
 * with *why saying what happened when the errno alone would mislead.
 */
static int advance(struct file_source *fs, struct fy_io *io, uint64_t *pos,
		   uint64_t end, long res, bool was_direct, unsigned *stalls,
		   const char **why)
{
	uint64_t next;
	int rc;

	*why = NULL;
	if (res == -EINTR)
		return 0;
	if (res == -EAGAIN)
		goto stalled;
	if (res == -EINVAL && was_direct) {
		rc = switch_to_buffered(fs);
		return rc < 0 ? rc : 0;
	}
	if (res < 0)
		return (int)res;
	if (res == 0) {
		*why = "end of file before the size it had when opened "
		       "(was it truncated while being read?)";
		return -EIO;
	}
	next = *pos + (uint64_t)res;
	if (next >= end) {
		/* Rounded up for O_DIRECT, the read may pass the size seen
		 * at open if the file grew; that part must read as zeros. */
		if (next > end)
			memset(buf_at(io, end), 0, next - end);
		return 1;
	}
	/* O_DIRECT can only resume at a block boundary: re-read the rest
	 * of a partial block into the same place. */
	if (fs->direct)
		next = align_down(next);
	if (next > *pos) {
		*pos = next;
		*stalls = 0;
		return 0;
	}
stalled:
	if (++*stalls > MAX_STALLS) {
		*why = "the read makes no progress";
		return -EIO;
	}
	return 0;
}

static size_t request_len(const struct file_source *fs, uint64_t pos,
			  uint64_t end)
{
	/* The caller's aligned length always has room for the round-up:
	 * only the piece ending at the size can end unaligned. */
	return (size_t)(fs->direct ? align_up(end) - pos : end - pos);
}

/* Reads [pos, end) of io with pread: buffered mode, or aio fallback. */
static void read_sync(struct file_source *fs, struct batch *b,
		      struct fy_io *io, uint64_t pos, uint64_t end)
{
	unsigned stalls = 0;

	for (;;) {
		bool was_direct = fs->direct;
		const char *why;
		ssize_t got;
		int rc;

		got = pread(fs->fd, buf_at(io, pos), request_len(fs, pos, end),
			    (off_t)pos);
		rc = advance(fs, io, &pos, end, got < 0 ? -errno : (long)got,
			     was_direct, &stalls, &why);
		if (rc == 1)
			return;
		if (rc < 0) {
			fail(fs, b, io, pos, rc, why);
			return;
		}
	}
}

/* Skips exhausted (or already failed) ios; true while pieces remain. */
static bool more_pieces(const struct file_source *fs, struct batch *b)
{
	while (b->next_io < b->n) {
		struct fy_io *io = &b->ios[b->next_io];
		uint64_t io_end = io->offset + io->len;

		if (io_end > fs->base.size)
			io_end = fs->base.size;
		if (io->result == 0 && b->next_pos < io_end)
			return true;
		b->next_io++;
		if (b->next_io < b->n)
			b->next_pos = b->ios[b->next_io].offset;
	}
	return false;
}

static bool next_piece(const struct file_source *fs, struct batch *b,
		       struct fy_io **io, uint64_t *pos, uint64_t *end)
{
	uint64_t io_end;

	if (!more_pieces(fs, b))
		return false;
	*io = &b->ios[b->next_io];
	io_end = (*io)->offset + (*io)->len;
	if (io_end > fs->base.size)
		io_end = fs->base.size;
	*pos = b->next_pos;
	*end = io_end - *pos > fs->io_size ? *pos + fs->io_size : io_end;
	b->next_pos = *end;
	return true;
}

/* The request is done with its piece: back to the free list. */
static void release(struct file_source *fs, struct request *req)
{
	req->inflight = false;
	req->batch->busy--;
	req->next_free = fs->free;
	fs->free = req;
}

static void queue(struct file_source *fs, struct request *req)
{
	io_prep_pread(&req->iocb, fs->fd, buf_at(req->io, req->pos),
		      request_len(fs, req->pos, req->end), (long long)req->pos);
	req->iocb.data = req;
	req->direct = fs->direct;
	fs->ready[fs->nready++] = &req->iocb;
}

/* Handles res for req, from a completion or a refused submission. */
static void complete(struct file_source *fs, struct request *req, long res)
{
	const char *why;
	int rc;

	req->inflight = false;
	rc = advance(fs, req->io, &req->pos, req->end, res, req->direct,
		     &req->stalls, &why);
	if (rc == 0 && fs->use_aio) {
		queue(fs, req);
		return;
	}
	if (rc == 0)
		read_sync(fs, req->batch, req->io, req->pos, req->end);
	else if (rc < 0)
		fail(fs, req->batch, req->io, req->pos, rc, why);
	release(fs, req);
}

static void submit(struct file_source *fs)
{
	struct request *req;
	int got;
	size_t i;

	got = io_submit(fs->aio, (long)fs->nready, fs->ready);
	if (got > 0) {
		for (i = 0; i < (size_t)got; i++)
			((struct request *)fs->ready[i]->data)->inflight = true;
		fs->inflight += (size_t)got;
		fs->nready -= (size_t)got;
		memmove(fs->ready, fs->ready + got,
			fs->nready * sizeof(fs->ready[0]));
		return;
	}
	/* Out of kernel resources with requests in flight: reap first. */
	if ((got == -EAGAIN || got == 0) && fs->inflight > 0)
		return;
	/* An error of io_submit belongs to the first request. */
	req = fs->ready[0]->data;
	fs->nready--;
	memmove(fs->ready, fs->ready + 1, fs->nready * sizeof(fs->ready[0]));
	if (got == -EAGAIN || got == 0) {
		/* Nothing in flight to wait for: read this one directly. */
		read_sync(fs, req->batch, req->io, req->pos, req->end);
		release(fs, req);
		return;
	}
	complete(fs, req, got);
}

/*
 * io_getevents cannot fail with a valid context; if it does, io_destroy
 * waits for what is in flight, so no buffer is written after we return,
 * and the source goes on with pread.
 */
static void abandon_aio(struct file_source *fs, int rc)
{
	size_t i;

	io_destroy(fs->aio);
	fs->aio = 0;
	fs->use_aio = false;
	for (i = 0; i < fs->queue_depth; i++) {
		struct request *req = &fs->reqs[i];

		if (!req->inflight)
			continue;
		fail(fs, req->batch, req->io, req->pos, rc, NULL);
		release(fs, req);
	}
	fs->inflight = 0;
	fy_warn("%s: asynchronous I/O failed (%s); using synchronous reads",
		fs->base.name, strerror(-rc));
}

static void reap(struct file_source *fs)
{
	int got, i;

	got = io_getevents(fs->aio, 1, (long)fs->inflight, fs->events, NULL);
	if (got == -EINTR)
		return;
	if (got < 0) {
		abandon_aio(fs, got);
		return;
	}
	fs->inflight -= (size_t)got;
	for (i = 0; i < got; i++)
		complete(fs, fs->events[i].data, (long)fs->events[i].res);
}

/*
 * With the read cache on, the whole batch and the next one like it are
 * handed to the kernel's readahead at once (POSIX_FADV_WILLNEED starts the
 * reads without waiting), so the sequential preads below mostly find the
 * page cache filled while the previous batch is being hashed: the
 * buffered counterpart of libaio's requests in flight.
 */
static void read_ahead(struct file_source *fs, const struct fy_io *ios,
		       size_t n)
{
	uint64_t lo = UINT64_MAX, hi = 0, window;
	size_t i;

	for (i = 0; i < n; i++) {
		if (ios[i].offset >= fs->base.size || !ios[i].len)
			continue;
		if (ios[i].offset < lo)
			lo = ios[i].offset;
		if (ios[i].offset + ios[i].len > hi)
			hi = ios[i].offset + ios[i].len;
	}
	if (hi > fs->base.size)
		hi = fs->base.size;
	if (lo >= hi)
		return;
	window = (uint64_t)fs->queue_depth * fs->io_size;
	hi = window > fs->base.size - hi ? fs->base.size : hi + window;
	/* Advice only: a kernel that ignores it still reads correctly. */
	(void)posix_fadvise(fs->fd, (off_t)lo, (off_t)(hi - lo),
			    POSIX_FADV_WILLNEED);
}

/* Hands every free request a piece, the oldest started batch's first. */
static void fill(struct file_source *fs)
{
	unsigned k;

	for (k = 0; k < fs->nstarted && fs->use_aio && fs->free; k++) {
		struct batch *b =
			&fs->started[(fs->oldest + k) % FY_SOURCE_MAX_STARTED];
		struct request *req;
		struct fy_io *io;
		uint64_t pos, end;

		while (fs->free && next_piece(fs, b, &io, &pos, &end)) {
			req = fs->free;
			fs->free = req->next_free;
			*req = (struct request){ .batch = b, .io = io,
						 .pos = pos, .end = end };
			b->busy++;
			queue(fs, req);
		}
	}
}

static int file_start(struct fy_source *src, struct fy_io *ios, size_t n)
{
	struct file_source *fs = (struct file_source *)src;
	struct batch *b;
	struct fy_io *io;
	size_t i;

	if (fs->nstarted == FY_SOURCE_MAX_STARTED) {
		for (i = 0; i < n; i++)
			ios[i].result = -EBUSY;
		return fy_err_set(-EBUSY, "%s: %u batches started already",
				  src->name, fs->nstarted);
	}
	for (i = 0; i < n; i++) {
		const char *why = NULL;
		size_t j;

		io = &ios[i];
		if (io->len > UINT64_MAX - io->offset)
			why = "the end overflows";
		else if ((uintptr_t)io->buf % src->align ||
			 io->len % src->align || io->offset % src->align)
			why = "O_DIRECT needs buffer, length and offset "
			      "aligned to 4096 bytes";
		if (!why)
			continue;
		/* A broken contract fails the whole batch before any I/O. */
		for (j = 0; j < n; j++)
			ios[j].result = -ECANCELED;
		io->result = -EINVAL;
		return fy_err_set(-EINVAL, "%s: read of %zu bytes at offset "
				  "%llu into %p: %s", src->name, io->len,
				  (unsigned long long)io->offset, io->buf,
				  why);
	}
	for (i = 0; i < n; i++) {
		io = &ios[i];
		io->result = 0;
		/* Past the end reads as zeros, without any I/O. */
		if (io->offset >= src->size)
			memset(io->buf, 0, io->len);
		else if (io->len > src->size - io->offset)
			memset(buf_at(io, src->size), 0,
			       io->len - (src->size - io->offset));
	}
	if (fs->cached)
		read_ahead(fs, ios, n);
	b = &fs->started[(fs->oldest + fs->nstarted) % FY_SOURCE_MAX_STARTED];
	*b = (struct batch){ .ios = ios, .n = n };
	if (n > 0)
		b->next_pos = ios[0].offset;
	fs->nstarted++;
	fill(fs);
	if (fs->nready > 0)
		submit(fs);
	return 0;
}

static int file_wait(struct fy_source *src, struct fy_io *ios, size_t n)
{
	struct file_source *fs = (struct file_source *)src;
	struct batch *b = &fs->started[fs->oldest];
	struct fy_io *io;
	uint64_t pos, end;
	size_t i;
	int rc;

	if (fs->nstarted == 0 || b->ios != ios || b->n != n)
		return fy_err_set(-EINVAL, "%s: wait for a batch that is not "
				  "the oldest one started", src->name);
	for (;;) {
		fill(fs);
		if (!fs->use_aio) {
			/* Buffered, or O_DIRECT refused on the way. */
			for (i = 0; i < fs->nready; i++) {
				struct request *req = fs->ready[i]->data;

				read_sync(fs, req->batch, req->io, req->pos,
					  req->end);
				release(fs, req);
			}
			fs->nready = 0;
			while (next_piece(fs, b, &io, &pos, &end))
				read_sync(fs, b, io, pos, end);
		}
		/* Submitted before returning, so the next batch's pieces
		 * are read while the caller works on this one. */
		if (fs->nready > 0)
			submit(fs);
		if (b->busy == 0 && !more_pieces(fs, b))
			break;
		if (fs->inflight > 0)
			reap(fs);
	}
	rc = b->first_error;
	if (rc)
		fy_err_set(rc, "%s", b->msg);
	fs->oldest = (fs->oldest + 1) % FY_SOURCE_MAX_STARTED;
	fs->nstarted--;
	return rc;
}

static int file_read_batch(struct fy_source *src, struct fy_io *ios, size_t n)
{
	struct file_source *fs = (struct file_source *)src;
	size_t i;
	int rc;

	if (fs->nstarted > 0) {
		for (i = 0; i < n; i++)
			ios[i].result = -EBUSY;
		return fy_err_set(-EBUSY, "%s: read while %u batches are "
				  "started", src->name, fs->nstarted);
	}
	rc = file_start(src, ios, n);
	return rc < 0 ? rc : file_wait(src, ios, n);
}

static int file_read(struct fy_source *src, void *buf, size_t len,
		     uint64_t offset)
{
	struct fy_io io = { .buf = buf, .len = len, .offset = offset };

	return file_read_batch(src, &io, 1);
}

/* Merges adjacent runs of one kind so the callback sees each run once. */
struct emitter {
	fy_extent_cb cb;
	void *opaque;
	bool pending;
	enum fy_extent_kind kind;
	uint64_t start, end;
};

static int emit(struct emitter *em, uint64_t start, uint64_t end,
		enum fy_extent_kind kind)
{
	int rc;

	if (start >= end)
		return 0;
	if (em->pending && em->kind == kind && em->end == start) {
		em->end = end;
		return 0;
	}
	if (em->pending) {
		rc = em->cb(em->opaque, em->start, em->end - em->start,
			    em->kind);
		if (rc)
			return rc;
	}
	em->pending = true;
	em->kind = kind;
	em->start = start;
	em->end = end;
	return 0;
}

/*
 * With O_DIRECT a caller can only read whole aligned blocks, so a hole is
 * reported as zero only for the aligned blocks it covers entirely; its
 * partial blocks at either end are reported as data (they read as zeros).
 */
static int emit_hole(const struct file_source *fs, struct emitter *em,
		     uint64_t start, uint64_t end)
{
	uint64_t zstart = start, zend = end;
	int rc;

	if (fs->base.align > 1) {
		zstart = align_up(start);
		zend = align_down(end);
		if (zstart >= zend)
			return emit(em, start, end, FY_EXTENT_DATA);
	}
	rc = emit(em, start, zstart, FY_EXTENT_DATA);
	if (!rc)
		rc = emit(em, zstart, zend, FY_EXTENT_ZERO);
	if (!rc)
		rc = emit(em, zend, end, FY_EXTENT_DATA);
	return rc;
}

static int file_extents(struct fy_source *src, uint64_t offset,
			uint64_t length, fy_extent_cb cb, void *opaque)
{
	struct file_source *fs = (struct file_source *)src;
	struct emitter em = { .cb = cb, .opaque = opaque };
	uint64_t pos = offset, end = offset + length;
	int rc = 0;

	if (end > src->size)
		end = src->size;
	while (pos < end) {
		off_t data, hole;

		data = lseek(fs->fd, (off_t)pos, SEEK_DATA);
		if (data < 0 && errno == ENXIO) {
			/* No data from pos to the end of the file. */
			data = (off_t)end;
		} else if (data < 0) {
			rc = -errno;
			fy_err_set(rc, "%s: SEEK_DATA at offset %llu: %s",
				   src->name, (unsigned long long)pos,
				   strerror(-rc));
			return rc;
		}
		if ((uint64_t)data > pos) {
			uint64_t hole_end = (uint64_t)data < end ?
						    (uint64_t)data : end;

			rc = emit_hole(fs, &em, pos, hole_end);
			if (rc)
				return rc;
			pos = hole_end;
			continue;
		}
		hole = lseek(fs->fd, (off_t)pos, SEEK_HOLE);
		if (hole < 0) {
			rc = -errno;
			fy_err_set(rc, "%s: SEEK_HOLE at offset %llu: %s",
				   src->name, (unsigned long long)pos,
				   strerror(-rc));
			return rc;
		}
		if ((uint64_t)hole > end)
			hole = (off_t)end;
		/* SEEK_HOLE at data never returns pos itself; be sure. */
		if ((uint64_t)hole <= pos)
			hole = (off_t)end;
		rc = emit(&em, pos, (uint64_t)hole, FY_EXTENT_DATA);
		if (rc)
			return rc;
		pos = (uint64_t)hole;
	}
	if (em.pending)
		rc = cb(opaque, em.start, em.end - em.start, em.kind);
	return rc;
}

static void file_close(struct fy_source *src)
{
	struct file_source *fs = (struct file_source *)src;

	if (fs->aio)
		io_destroy(fs->aio);
	if (fs->fd >= 0)
		close(fs->fd);
	free(fs->reqs);
	free(fs->ready);
	free(fs->events);
	free(fs);
}

static const struct fy_source_ops file_ops = {
	.name = "file",
	.read = file_read,
	.read_batch = file_read_batch,
	.start = file_start,
	.wait = file_wait,
	.extents = file_extents,
	.close = file_close,
};

/* A block device has no holes to seek to: it reports no extents. */
static const struct fy_source_ops block_device_ops = {
	.name = "file",
	.read = file_read,
	.read_batch = file_read_batch,
	.start = file_start,
	.wait = file_wait,
	.close = file_close,
};

int fy_file_source_open(const char *path,
			const struct fy_file_source_opts *opts,
			struct fy_source **out)
{
	struct fy_file_source_opts o = { 0 };
	struct file_source *fs;
	struct stat st;
	int flags = O_RDONLY | O_CLOEXEC;
	unsigned i;
	int rc;

	if (opts)
		o = *opts;
	if (o.queue_depth == 0)
		o.queue_depth = DEFAULT_QUEUE_DEPTH;
	if (o.io_size == 0)
		o.io_size = DEFAULT_IO_SIZE;
	if (o.queue_depth > MAX_QUEUE_DEPTH)
		return fy_err_set(-EINVAL, "%s: queue depth %u is above the "
				  "limit of %u", path, o.queue_depth,
				  MAX_QUEUE_DEPTH);
	if (o.io_size > MAX_IO_SIZE)
		return fy_err_set(-EINVAL, "%s: I/O size %zu is above the "
				  "limit of %u", path, o.io_size, MAX_IO_SIZE);
	/* Every piece but the last must stay aligned for O_DIRECT. */
	o.io_size = o.io_size < FILE_ALIGN ? FILE_ALIGN :
					     (size_t)align_down(o.io_size);

	fs = calloc(1, sizeof(*fs));
	if (!fs)
		return fy_err_set(-ENOMEM, "%s: out of memory", path);
	fs->fd = -1;
	fs->queue_depth = o.queue_depth;
	fs->io_size = o.io_size;
	snprintf(fs->base.name, sizeof(fs->base.name), "%s", path);

	fs->cached = o.cached;
	if (!o.no_direct && !o.cached)
		flags |= O_DIRECT;
	fs->fd = open(path, flags);
	if (fs->fd < 0 && errno == EINVAL && (flags & O_DIRECT)) {
		flags &= ~O_DIRECT;
		fs->fd = open(path, flags);
	}
	if (fs->fd < 0) {
		rc = -errno;
		fy_err_set(rc, "cannot open %s: %s", path, strerror(-rc));
		goto out;
	}
	fs->direct = flags & O_DIRECT;
	if (fstat(fs->fd, &st) < 0) {
		rc = -errno;
		fy_err_set(rc, "cannot stat %s: %s", path, strerror(-rc));
		goto out;
	}
	if (S_ISREG(st.st_mode)) {
		fs->base.ops = &file_ops;
		fs->base.size = (uint64_t)st.st_size;
	} else if (S_ISBLK(st.st_mode)) {
		fs->base.ops = &block_device_ops;
		if (ioctl(fs->fd, BLKGETSIZE64, &fs->base.size) < 0) {
			rc = -errno;
			fy_err_set(rc, "cannot get the size of %s: %s", path,
				   strerror(-rc));
			goto out;
		}
	} else {
		rc = fy_err_set(-EINVAL, "%s is not a regular file or a block "
				"device", path);
		goto out;
	}
	fs->base.align = fs->direct ? FILE_ALIGN : 1;
	/* Doubles the kernel's readahead window for this file. */
	if (fs->cached)
		(void)posix_fadvise(fs->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	/* Said once per source, and only about something we can read. */
	if (!fs->direct && !o.no_direct && !o.cached)
		fy_warn("%s: O_DIRECT was refused (tmpfs or ramfs?); using "
			"buffered reads", path);

	/* Buffered aio would block in io_submit; pread is as good there. */
	if (fs->direct) {
		rc = io_setup((int)fs->queue_depth, &fs->aio);
		if (rc < 0) {
			fs->aio = 0;
			fy_err_set(rc, "%s: io_setup for %u requests: %s%s",
				   path, fs->queue_depth, strerror(-rc),
				   rc == -EAGAIN ?
					   " (see /proc/sys/fs/aio-max-nr)" :
					   "");
			goto out;
		}
		fs->use_aio = true;
	}
	fs->reqs = calloc(fs->queue_depth, sizeof(fs->reqs[0]));
	fs->ready = calloc(fs->queue_depth, sizeof(fs->ready[0]));
	fs->events = calloc(fs->queue_depth, sizeof(fs->events[0]));
	if (!fs->reqs || !fs->ready || !fs->events) {
		rc = fy_err_set(-ENOMEM, "%s: out of memory", path);
		goto out;
	}
	for (i = 0; i < fs->queue_depth; i++) {
		fs->reqs[i].next_free = fs->free;
		fs->free = &fs->reqs[i];
	}
	*out = &fs->base;
	return 0;
out:
	file_close(&fs->base);
	return rc;
}
