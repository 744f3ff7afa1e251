// JetStream publish throughput with de-duplication ids, async (pipelined) and synchronous,
// against a local nats-server -js (file storage, R1). Prints msgs/s and latency percentiles.
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <time.h>
#define CHECK(call) do { natsStatus s_ = (call); if (s_ != NATS_OK) { fprintf(stderr, "FAIL %s: %s line %d\n", #call, natsStatus_GetText(s_), __LINE__); exit(1);} } while (0)
static jsErrCode jerr;
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static volatile long acked = 0, failed = 0;
static void onAck(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure) {
    if (pae) __sync_fetch_and_add(&failed, 1); else __sync_fetch_and_add(&acked, 1);
    natsMsg_Destroy(msg);
}
typedef struct { jsCtx *js; int n; int id; double *lat; } worker;
static void *syncWorker(void *arg) {
    worker *w = arg; char subj[64], id[64], data[300]; memset(data, 'x', sizeof data);
    for (int i = 0; i < w->n; i++) {
        snprintf(subj, sizeof subj, "q.s%d-%d", w->id, i); snprintf(id, sizeof id, "s%d-%d", w->id, i);
        jsPubOptions po; jsPubOptions_Init(&po); po.MsgId = id;
        double t0 = now(); CHECK(js_Publish(NULL, w->js, subj, data, sizeof data, &po, &jerr)); w->lat[i] = now() - t0;
    }
    return NULL;
}
static int cmp(const void *a, const void *b) { double x = *(double *)a, y = *(double *)b; return x < y ? -1 : x > y; }
int main(int argc, char **argv) {
    int n = atoi(argv[2]);
    natsConnection *nc = NULL; jsCtx *js = NULL; jsOptions jo; jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = 4096; jo.PublishAsync.AckHandler = onAck;
    CHECK(natsConnection_ConnectTo(&nc, argv[1])); CHECK(natsConnection_JetStream(&js, nc, &jo));
    jsStreamConfig sc; jsStreamConfig_Init(&sc); const char *s[] = {"q.>"};
    sc.Name = "Q"; sc.Subjects = s; sc.SubjectsLen = 1; sc.Retention = js_WorkQueuePolicy; sc.Duplicates = 120LL * 1000000000LL;
    CHECK(js_AddStream(NULL, js, &sc, NULL, &jerr));
    char subj[64], id[64], data[300]; memset(data, 'x', sizeof data);
    double t0 = now();
    for (int i = 0; i < n; i++) {
        natsMsg *m = NULL; snprintf(subj, sizeof subj, "q.a%d", i); snprintf(id, sizeof id, "a%d", i);
        CHECK(natsMsg_Create(&m, subj, NULL, data, sizeof data));
        jsPubOptions po; jsPubOptions_Init(&po); po.MsgId = id;
        CHECK(js_PublishMsgAsync(js, &m, &po));
    }
    CHECK(js_PublishAsyncComplete(js, NULL));
    double t = now() - t0;
    printf("async publish, 300-byte payload, MsgId, subject per key: %d in %.2f s = %.0f msgs/s (acked %ld, failed %ld)\n", n, t, n / t, acked, failed);
    int threads = 32, per = n / 4 / threads; pthread_t th[32]; worker w[32];
    t0 = now();
    for (int i = 0; i < threads; i++) { w[i] = (worker){js, per, i, calloc(per, sizeof(double))}; pthread_create(&th[i], NULL, syncWorker, &w[i]); }
    double *all = calloc(per * threads, sizeof(double)); int k = 0;
    for (int i = 0; i < threads; i++) { pthread_join(th[i], NULL); memcpy(all + k, w[i].lat, per * sizeof(double)); k += per; }
    t = now() - t0; qsort(all, k, sizeof(double), cmp);
    printf("sync publish from %d threads: %d in %.2f s = %.0f msgs/s, p50 %.2f ms, p99 %.2f ms\n", threads, k, t, k / t, all[k / 2] * 1e3, all[k * 99 / 100] * 1e3);
    jsCtx_Destroy(js); natsConnection_Destroy(nc); return 0;
}
