/*
 * ofi_client: the C reference for `dmem bench ofi` (src/bench/ofi-bench.ts).
 * Does the same one-sided operations as the JS OfiTransport, on the same
 * memory node and memory registration, with libfabric's inline calls
 * (fi_read, fi_write, fi_compare_atomic) and no FFI or Wasm in between, so
 * the difference between the two is the cost of koffi + JS + the core.
 *
 * usage: ofi_client PROVIDER HOST ADDR_HEX KEY BASE OFFSET OP COUNT INFLIGHT
 *   OP: read8 | cas8 | write4k; every operation targets OFFSET (+ BASE) under KEY.
 * prints one JSON line: {"op","inflight","count","ops_per_s","p50_ns","p99_ns"}
 * Latency of an operation: from its post to the completion queue entry.
 * Waiting: it polls the CQ and gives the core up (sched_yield) every 64
 * empty polls, as the JS transport does (plugins/rdma/transport.ts), so
 * that on a machine with more runnable threads than cores neither side
 * starves the node's progress thread and the two compare like for like.
 */
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <rdma/fabric.h>
#include <rdma/fi_atomic.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#define MAX_INFLIGHT 64

static void die(const char *what, int rc) {
	fprintf(stderr, "ofi_client: %s: %s\n", what, fi_strerror(-rc));
	exit(1);
}

static uint64_t now_ns(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
	if (argc != 10) {
		fprintf(stderr, "usage: ofi_client PROVIDER HOST ADDR_HEX KEY BASE OFFSET OP COUNT INFLIGHT\n");
		return 2;
	}
	const char *prov = argv[1], *host = argv[2], *hex = argv[3], *op = argv[7];
	uint64_t key = strtoull(argv[4], NULL, 10), base = strtoull(argv[5], NULL, 10), off = strtoull(argv[6], NULL, 10);
	long count = atol(argv[8]);
	int inflight = atoi(argv[9]);
	if (inflight < 1 || inflight > MAX_INFLIGHT || count < 1) { fprintf(stderr, "ofi_client: bad count or inflight\n"); return 2; }
	int kind = !strcmp(op, "read8") ? 0 : !strcmp(op, "cas8") ? 1 : !strcmp(op, "write4k") ? 2 : -1;
	if (kind < 0) { fprintf(stderr, "ofi_client: unknown op %s\n", op); return 2; }

	struct fi_info *hints = fi_allocinfo(), *info;
	hints->caps = FI_RMA | FI_ATOMIC | FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE;
	hints->ep_attr->type = FI_EP_RDM;
	hints->domain_attr->mr_mode = FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY;
	hints->tx_attr->op_flags = FI_DELIVERY_COMPLETE;
	hints->fabric_attr->prov_name = strdup(prov);
	int rc = fi_getinfo(FI_VERSION(1, 9), host, NULL, 0, hints, &info);
	if (rc) {
		hints->tx_attr->op_flags = 0;
		rc = fi_getinfo(FI_VERSION(1, 9), host, NULL, 0, hints, &info);
	}
	if (rc) die("fi_getinfo", rc);
	struct fid_fabric *fabric;
	struct fid_domain *domain;
	struct fid_cq *cq;
	struct fid_av *av;
	struct fid_ep *ep;
	struct fi_cq_attr cq_attr = { .format = FI_CQ_FORMAT_CONTEXT, .wait_obj = FI_WAIT_NONE };
	struct fi_av_attr av_attr = { .type = FI_AV_TABLE, .count = 4 };
	if ((rc = fi_fabric(info->fabric_attr, &fabric, NULL))) die("fi_fabric", rc);
	if ((rc = fi_domain(fabric, info, &domain, NULL))) die("fi_domain", rc);
	if ((rc = fi_cq_open(domain, &cq_attr, &cq, NULL))) die("fi_cq_open", rc);
	if ((rc = fi_av_open(domain, &av_attr, &av, NULL))) die("fi_av_open", rc);
	if ((rc = fi_endpoint(domain, info, &ep, NULL))) die("fi_endpoint", rc);
	if ((rc = fi_ep_bind(ep, &cq->fid, FI_TRANSMIT | FI_RECV))) die("fi_ep_bind cq", rc);
	if ((rc = fi_ep_bind(ep, &av->fid, 0))) die("fi_ep_bind av", rc);
	if ((rc = fi_enable(ep))) die("fi_enable", rc);

	size_t alen = strlen(hex) / 2;
	unsigned char addr[256];
	if (alen > sizeof addr) { fprintf(stderr, "ofi_client: address too long\n"); return 2; }
	for (size_t i = 0; i < alen; i++) sscanf(hex + 2 * i, "%2hhx", &addr[i]);
	fi_addr_t peer;
	if (fi_av_insert(av, addr, 1, &peer, 0, NULL) != 1) die("fi_av_insert", -FI_EINVAL);

	/* One slot per operation in flight: its buffers, context and post time. */
	static char bufs[MAX_INFLIGHT][4096];
	static uint64_t operand[MAX_INFLIGHT], compare[MAX_INFLIGHT], result[MAX_INFLIGHT];
	static struct fi_context ctx[MAX_INFLIGHT];
	static uint64_t posted_at[MAX_INFLIGHT];
	uint64_t *lat = malloc(sizeof(uint64_t) * (size_t)count);
	long posted = 0, done = 0;
	unsigned empty = 0;
	int free_slots[MAX_INFLIGHT], nfree = inflight;
	for (int i = 0; i < inflight; i++) free_slots[i] = i;
	uint64_t addr_remote = base + off;
	uint64_t t0 = now_ns();
	while (done < count) {
		while (nfree > 0 && posted < count) {
			int s = free_slots[nfree - 1];
			ssize_t r;
			posted_at[s] = now_ns();
			if (kind == 0) r = fi_read(ep, bufs[s], 8, NULL, peer, addr_remote, key, &ctx[s]);
			else if (kind == 1) { compare[s] = 0; operand[s] = 0; r = fi_compare_atomic(ep, &operand[s], 1, NULL, &compare[s], NULL, &result[s], NULL, peer, addr_remote, key, FI_UINT64, FI_CSWAP, &ctx[s]); }
			else r = fi_write(ep, bufs[s], 4096, NULL, peer, addr_remote, key, &ctx[s]);
			if (r == -FI_EAGAIN) { struct fi_cq_entry e; ssize_t n = fi_cq_read(cq, &e, 0); (void)n; break; }
			if (r) die("post", (int)r);
			nfree--;
			posted++;
		}
		struct fi_cq_entry ent[MAX_INFLIGHT];
		ssize_t n = fi_cq_read(cq, ent, MAX_INFLIGHT);
		if (n == -FI_EAGAIN) {
			if ((++empty & 63) == 0) sched_yield();
			continue;
		}
		if (n < 0) {
			struct fi_cq_err_entry err = { 0 };
			fi_cq_readerr(cq, &err, 0);
			die("completion", -err.err);
		}
		uint64_t t = now_ns();
		for (ssize_t i = 0; i < n; i++) {
			int s = (int)((struct fi_context *)ent[i].op_context - ctx);
			lat[done++] = t - posted_at[s];
			free_slots[nfree++] = s;
		}
	}
	uint64_t elapsed = now_ns() - t0;
	qsort(lat, (size_t)count, sizeof(uint64_t), cmp_u64);
	printf("{\"op\":\"%s\",\"inflight\":%d,\"count\":%ld,\"ops_per_s\":%.1f,\"p50_ns\":%" PRIu64 ",\"p99_ns\":%" PRIu64 "}\n",
	       op, inflight, count, (double)count * 1e9 / (double)elapsed, lat[count / 2], lat[(count * 99) / 100]);
	fi_close(&ep->fid);
	fi_close(&av->fid);
	fi_close(&cq->fid);
	fi_close(&domain->fid);
	fi_close(&fabric->fid);
	fi_freeinfo(info);
	fi_freeinfo(hints);
	free(lat);
	return 0;
}
