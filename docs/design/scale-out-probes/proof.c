// Proof of the JetStream features the design relies on, with Debian's libnats 3.4.1 against a local
// nats-server -js. Prints one line per check; exits non-zero on the first failed call.
#include <nats/nats.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>
#define CHECK(call) do { natsStatus s_ = (call); if (s_ != NATS_OK) { fprintf(stderr, "FAIL %s: %s (line %d) errCode=%d\n", #call, natsStatus_GetText(s_), __LINE__, (int)jerr); nats_PrintLastErrorStack(stderr); exit(1);} } while (0)
static jsErrCode jerr;
static uint64_t msgs(jsCtx *js, const char *stream) {
    jsStreamInfo *si = NULL; CHECK(js_GetStreamInfo(&si, js, stream, NULL, &jerr));
    uint64_t n = si->State.Msgs; jsStreamInfo_Destroy(si); return n;
}
static void pub(jsCtx *js, const char *subj, const char *id, const char *data) {
    jsPubOptions po; jsPubOptions_Init(&po); po.MsgId = id; jsPubAck *pa = NULL;
    CHECK(js_Publish(&pa, js, subj, data, (int)strlen(data), &po, &jerr));
    printf("publish %-10s id=%-3s -> seq=%llu duplicate=%d\n", subj, id, (unsigned long long)pa->Sequence, pa->Duplicate);
    jsPubAck_Destroy(pa);
}
static uint64_t sseq(natsMsg *m) {
    jsMsgMetaData *md = NULL; CHECK(natsMsg_GetMetaData(&md, m));
    uint64_t n = md->Sequence.Stream; jsMsgMetaData_Destroy(md); return n;
}
static uint64_t delivered(natsMsg *m) {
    jsMsgMetaData *md = NULL; CHECK(natsMsg_GetMetaData(&md, m));
    uint64_t n = md->NumDelivered; jsMsgMetaData_Destroy(md); return n;
}
int main(int argc, char **argv) {
    natsConnection *nc = NULL; jsCtx *js = NULL;
    CHECK(natsConnection_ConnectTo(&nc, argv[1]));
    CHECK(natsConnection_JetStream(&js, nc, NULL));
    // 1. Work-queue stream: subject per key, de-duplication window, direct get.
    jsStreamConfig sc; jsStreamConfig_Init(&sc);
    const char *subjects[] = {"req.>"};
    sc.Name = "REQ"; sc.Subjects = subjects; sc.SubjectsLen = 1; sc.Retention = js_WorkQueuePolicy;
    sc.Storage = js_FileStorage; sc.Duplicates = 120LL * 1000000000LL; sc.AllowDirect = true;
    CHECK(js_AddStream(NULL, js, &sc, NULL, &jerr));
    natsSubscription *adv = NULL;
    CHECK(natsConnection_SubscribeSync(&adv, nc, "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>"));
    pub(js, "req.k1", "m1", "create k1");
    pub(js, "req.k1", "m1", "create k1 again");
    pub(js, "req.k1", "m2", "reschedule k1");
    pub(js, "req.k2", "m3", "create k2");
    printf("stream REQ holds %llu messages\n", (unsigned long long)msgs(js, "REQ"));
    // Earliest message still in the queue for key k1 (direct get, next by subject from sequence 1).
    jsDirectGetMsgOptions dg; natsMsg *got = NULL;
    jsDirectGetMsgOptions_Init(&dg); dg.Sequence = 1; dg.NextBySubject = "req.k1";
    CHECK(js_DirectGetMsg(&got, js, "REQ", NULL, &dg));
    printf("direct get next by subject req.k1 from 1: seq=%llu data=%.*s\n", (unsigned long long)natsMsg_GetSequence(got), natsMsg_GetDataLength(got), natsMsg_GetData(got));
    natsMsg_Destroy(got);
    jsDirectGetMsgOptions_Init(&dg); dg.Sequence = 1; dg.NextBySubject = "req.*";
    natsStatus ws = js_DirectGetMsg(&got, js, "REQ", NULL, &dg);
    printf("direct get next by wildcard subject req.* from 1: %s seq=%llu\n", natsStatus_GetText(ws), ws == NATS_OK ? (unsigned long long)natsMsg_GetSequence(got) : 0ULL);
    if (ws == NATS_OK) natsMsg_Destroy(got);
    // 2. Durable pull consumer: explicit ack, ack wait, max deliver.
    jsSubOptions so; jsSubOptions_Init(&so);
    so.Config.AckPolicy = js_AckExplicit; so.Config.AckWait = 1000LL * 1000000LL; so.Config.MaxDeliver = 3; so.Config.MaxAckPending = 1000;
    natsSubscription *sub = NULL;
    CHECK(js_PullSubscribe(&sub, js, "req.>", "workflow", NULL, &so, &jerr));
    natsMsgList list = {0};
    CHECK(natsSubscription_Fetch(&list, sub, 10, 2000, &jerr));
    printf("fetch 1: %d messages\n", list.Count);
    natsMsg *k1create = NULL, *k1resched = NULL;
    for (int i = 0; i < list.Count; i++) {
        natsMsg *m = list.Msgs[i];
        printf("  %s seq=%llu delivered=%llu %.*s\n", natsMsg_GetSubject(m), (unsigned long long)sseq(m), (unsigned long long)delivered(m), natsMsg_GetDataLength(m), natsMsg_GetData(m));
        if (strcmp(natsMsg_GetSubject(m), "req.k2") == 0) CHECK(natsMsg_AckSync(m, NULL, &jerr));
    }
    natsMsgList_Destroy(&list);
    printf("after AckSync of k2: stream REQ holds %llu (work queue removes acknowledged messages)\n", (unsigned long long)msgs(js, "REQ"));
    usleep(1300 * 1000);  // ack wait runs out: both k1 messages come back
    CHECK(natsSubscription_Fetch(&list, sub, 10, 2000, &jerr));
    printf("fetch 2 after ack wait: %d messages\n", list.Count);
    for (int i = 0; i < list.Count; i++) {
        natsMsg *m = list.Msgs[i];
        printf("  %s seq=%llu delivered=%llu\n", natsMsg_GetSubject(m), (unsigned long long)sseq(m), (unsigned long long)delivered(m));
        if (sseq(m) == 1) k1create = m; else k1resched = m;
        list.Msgs[i] = NULL;
    }
    natsMsgList_Destroy(&list);
    // InProgress keeps a message leased past its ack wait; Nak with delay hands it back later.
    for (int i = 0; i < 3; i++) { usleep(600 * 1000); CHECK(natsMsg_InProgress(k1create, NULL)); }
    CHECK(natsMsg_NakWithDelay(k1resched, 300, NULL));
    CHECK(natsSubscription_Fetch(&list, sub, 10, 1500, &jerr));
    printf("fetch 3 (1.8 s later, k1create kept in progress, k1resched nak'd 300 ms): %d message(s)", list.Count);
    for (int i = 0; i < list.Count; i++) printf(" seq=%llu delivered=%llu", (unsigned long long)sseq(list.Msgs[i]), (unsigned long long)delivered(list.Msgs[i]));
    printf("\n");
    for (int i = 0; i < list.Count; i++) natsMsg_Ack(list.Msgs[i], NULL);
    natsMsgList_Destroy(&list);
    // Term: does a terminated message leave a work-queue stream?
    uint64_t before = msgs(js, "REQ");
    CHECK(natsMsg_Term(k1create, NULL)); natsMsg_Destroy(k1create); natsMsg_Destroy(k1resched);
    usleep(200 * 1000);
    printf("Term of seq 1: stream REQ held %llu, now %llu\n", (unsigned long long)before, (unsigned long long)msgs(js, "REQ"));
    // 3. MaxDeliver reached: the advisory, and the message stays in the stream.
    pub(js, "req.k4", "m4", "poison");
    for (int round = 0; round < 4; round++) {
        natsStatus fs = natsSubscription_Fetch(&list, sub, 10, 1500, &jerr);
        printf("poison round %d: %s %d message(s)", round + 1, natsStatus_GetText(fs), fs == NATS_OK ? list.Count : 0);
        if (fs == NATS_OK) { for (int i = 0; i < list.Count; i++) printf(" delivered=%llu", (unsigned long long)delivered(list.Msgs[i])); natsMsgList_Destroy(&list); }
        printf("\n");
    }
    natsMsg *a = NULL;
    if (natsSubscription_NextMsg(&a, adv, 2000) == NATS_OK) { printf("advisory on %s: %.*s\n", natsMsg_GetSubject(a), natsMsg_GetDataLength(a), natsMsg_GetData(a)); natsMsg_Destroy(a); }
    else printf("no MAX_DELIVERIES advisory within 2 s\n");
    printf("after max deliveries: stream REQ holds %llu\n", (unsigned long long)msgs(js, "REQ"));
    // 4. A topic (limits) and a subscriber group as a work-queue stream that sources it.
    jsStreamConfig tc; jsStreamConfig_Init(&tc); const char *tsub[] = {"ev.>"};
    tc.Name = "EVENTS"; tc.Subjects = tsub; tc.SubjectsLen = 1; tc.Storage = js_FileStorage; tc.Duplicates = 120LL * 1000000000LL;
    CHECK(js_AddStream(NULL, js, &tc, NULL, &jerr));
    pub(js, "ev.d1", "e1", "scheduled d1");
    jsStreamConfig gc; jsStreamConfig_Init(&gc); jsStreamSource src; memset(&src, 0, sizeof src); src.Name = "EVENTS";
    jsStreamSource *srcs[] = {&src};
    gc.Name = "EV_HISTORY"; gc.Retention = js_WorkQueuePolicy; gc.Storage = js_FileStorage; gc.Sources = srcs; gc.SourcesLen = 1; gc.AllowDirect = true;
    natsStatus gs = js_AddStream(NULL, js, &gc, NULL, &jerr);
    printf("work-queue stream sourcing EVENTS: %s (errCode %d)\n", natsStatus_GetText(gs), (int)jerr);
    if (gs == NATS_OK) {
        pub(js, "ev.d1", "e2", "picked up d1");
        usleep(500 * 1000);
        printf("EV_HISTORY holds %llu (expect 2: the retained one and the new one)\n", (unsigned long long)msgs(js, "EV_HISTORY"));
        jsDirectGetMsgOptions_Init(&dg); dg.Sequence = 1; dg.NextBySubject = "ev.d1";
        if (js_DirectGetMsg(&got, js, "EV_HISTORY", NULL, &dg) == NATS_OK) { printf("EV_HISTORY next by subject ev.d1: seq=%llu %.*s\n", (unsigned long long)natsMsg_GetSequence(got), natsMsg_GetDataLength(got), natsMsg_GetData(got)); natsMsg_Destroy(got); }
    }
    // 5. KV bucket: create-if-absent (a lease or a claim).
    kvConfig kc; kvConfig_Init(&kc); kc.Bucket = "leases"; kc.History = 1; kc.TTL = 10LL * 1000000000LL;
    kvStore *kv = NULL; CHECK(js_CreateKeyValue(&kv, js, &kc));
    uint64_t rev = 0;
    CHECK(kvStore_Create(&rev, kv, "flight.d1", "sim-1", 5));
    printf("kv create flight.d1 by sim-1: rev=%llu\n", (unsigned long long)rev);
    uint64_t mine = rev, other = 0;
    natsStatus ks = kvStore_Create(&other, kv, "flight.d1", "sim-2", 5);
    printf("kv create flight.d1 by sim-2: %s\n", natsStatus_GetText(ks));
    ks = kvStore_Update(&rev, kv, "flight.d1", "sim-1", 5, mine);
    printf("kv update flight.d1 by sim-1 at its revision: %s rev=%llu\n", natsStatus_GetText(ks), (unsigned long long)rev);
    ks = kvStore_Update(&other, kv, "flight.d1", "sim-2", 5, mine);
    printf("kv update flight.d1 by sim-2 at the old revision %llu: %s\n", (unsigned long long)mine, natsStatus_GetText(ks));
    kvStore_Destroy(kv);
    natsSubscription_Destroy(sub); natsSubscription_Destroy(adv);
    jsCtx_Destroy(js); natsConnection_Destroy(nc); nats_Close();
    return 0;
}
