/* ferry mount's block cache, driven directly: agent/mount.c is included so
 * its static functions can be called on a cache set up by hand. Every
 * block a case needs is in the cache (READY), so no read reaches the
 * repository: what is tested is pinning, waiting for space, and the
 * bound on loans. */
#include <pthread.h>
#include <time.h>

#include "../../agent/mount.c"
#include "check.h"

#define BS 4096u

static void setup(struct mount *m, unsigned n_blocks, unsigned n_slots)
{
	unsigned i;

	memset(m, 0, sizeof(*m));
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->cond, NULL);
	pthread_cond_init(&m->pool_cond, NULL);
	m->block_size = BS;
	m->size = (uint64_t)n_blocks * BS;
	m->map.n = n_blocks;
	m->map.size = m->size;
	m->map.block_size = BS;
	m->map.digest = calloc(n_blocks, FY_DIGEST_LEN);
	m->map.hole = calloc(n_blocks, 1);
	m->n_slots = n_slots;
	m->slots = calloc(n_slots, sizeof(*m->slots));
	for (i = 0; i < n_slots; i++) {
		pthread_cond_init(&m->slots[i].done, NULL);
		m->slots[i].data = malloc(BS);
	}
}

static void teardown(struct mount *m)
{
	unsigned i;

	for (i = 0; i < m->n_slots; i++) {
		free(m->slots[i].data);
		pthread_cond_destroy(&m->slots[i].done);
	}
	free(m->slots);
	free(m->map.digest);
	free(m->map.hole);
}

/* Slot i holds block `index`, READY, its bytes all `fill`. */
static void cached(struct mount *m, unsigned i, uint64_t index, unsigned refs,
		   uint8_t fill)
{
	m->slots[i].index = index;
	m->slots[i].state = SLOT_READY;
	m->slots[i].refs = refs;
	m->slots[i].stamp = ++m->clock;
	memset(m->slots[i].data, fill, BS);
}

struct reader {
	struct mount *m;
	uint64_t first, last;
	struct slot *pin[4];
	int rc;
	volatile int done;
};

static void *read_thread(void *arg)
{
	struct reader *r = arg;

	r->rc = pin_blocks(r->m, r->first, r->last, 0, 0, r->pin);
	r->done = 1;
	return NULL;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* A read of blocks 0..1 when block 0 sits unpinned in the only free slot
 * and block 1 is missing: that slot is not room for block 1 (the read
 * pins block 0 there), so the read waits for space, and goes on when
 * another read has loaded block 1 and let it go. */
static void test_own_block_is_not_room(void)
{
	struct mount m;
	struct reader r = { .m = &m, .first = 0, .last = 1 };
	pthread_t t;
	int i;

	setup(&m, 4, 3);
	cached(&m, 0, 0, 0, 0xa0);
	cached(&m, 1, 2, 1, 0xa2); /* pinned by other reads */
	cached(&m, 2, 3, 1, 0xa3);
	CHECK(pthread_create(&t, NULL, read_thread, &r) == 0);
	for (i = 0; i < 50 && !m.space_waiters; i++)
		sleep_ms(10);
	pthread_mutex_lock(&m.lock);
	CHECK(m.space_waiters == 1);
	CHECK(!r.done);
	/* Another read loaded block 1 into slot 2, and is done with it. */
	cached(&m, 2, 1, 0, 0xa1);
	pthread_cond_broadcast(&m.cond);
	pthread_mutex_unlock(&m.lock);
	pthread_join(t, NULL);
	CHECK(r.rc == 0);
	CHECK(r.pin[0] == &m.slots[0] && r.pin[1] == &m.slots[2]);
	CHECK(m.slots[0].refs == 1 && m.slots[2].refs == 1);
	CHECK(m.slots[1].index == 2 && m.slots[1].refs == 1);
	unpin_blocks(&m, r.pin, 2);
	CHECK(m.slots[0].refs == 0 && m.slots[2].refs == 0);
	teardown(&m);
}

/* mount_read: cached blocks and holes, across block edges. */
static void test_read(void)
{
	struct mount m;
	uint8_t buf[3 * BS];
	size_t k;

	setup(&m, 4, 4);
	m.map.hole[1] = 1;
	cached(&m, 0, 0, 0, 0xb0);
	cached(&m, 1, 2, 0, 0xb2);
	CHECK(mount_read(&m, BS - 10, 2 * BS + 10, buf) == 0);
	for (k = 0; k < 10; k++)
		CHECK(buf[k] == 0xb0);
	for (k = 10; k < 10 + BS; k++)
		CHECK(buf[k] == 0);
	for (k = 10 + BS; k < 2 * BS + 10; k++)
		CHECK(buf[k] == 0xb2);
	CHECK(m.slots[0].refs == 0 && m.slots[1].refs == 0);
	teardown(&m);
}

/* Loans: up to lend_max at once, then the server copies (*lent 0); a
 * release makes room for the next; a loan ends at its block's end; a hole
 * is not lent. */
static void test_loans(void)
{
	struct mount m;
	const uint8_t *d1 = NULL, *d2 = NULL;
	uint32_t l1 = 0, l2 = 7;
	void *t1 = NULL, *t2 = NULL;

	setup(&m, 4, 4);
	m.map.hole[3] = 1;
	m.lend_max = 1;
	cached(&m, 0, 0, 0, 0xc0);
	cached(&m, 1, 1, 0, 0xc1);
	CHECK(mount_lend(&m, 100, 2 * BS, &d1, &l1, &t1) == 0);
	CHECK(l1 == BS - 100 && d1 == m.slots[0].data + 100 &&
	      t1 == &m.slots[0]);
	CHECK(m.slots[0].refs == 1 && m.lent == 1);
	CHECK(mount_lend(&m, BS, BS, &d2, &l2, &t2) == 0);
	CHECK(l2 == 0 && m.lent == 1 && m.slots[1].refs == 0);
	mount_release(&m, t1);
	CHECK(m.slots[0].refs == 0 && m.lent == 0);
	CHECK(mount_lend(&m, BS, BS, &d2, &l2, &t2) == 0);
	CHECK(l2 == BS && d2 == m.slots[1].data && m.lent == 1);
	mount_release(&m, t2);
	fy_log_set_level(FY_LOG_QUIET);
	CHECK(mount_lend(&m, 3 * BS, BS, &d2, &l2, &t2) == -EIO);
	CHECK(l2 == 0 && m.lent == 0);
	teardown(&m);
}

int main(void)
{
	test_own_block_is_not_room();
	test_read();
	test_loans();
	CHECK_DONE();
}
