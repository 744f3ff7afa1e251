// Is a late acknowledgement (from a delivery whose ack wait ran out and that was redelivered) fenced?
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#define CHECK(call) do { natsStatus s_ = (call); if (s_ != NATS_OK) { fprintf(stderr, "FAIL %s: %s line %d\n", #call, natsStatus_GetText(s_), __LINE__); exit(1);} } while (0)
static jsErrCode jerr;
static uint64_t msgs(jsCtx *js) { jsStreamInfo *si = NULL; CHECK(js_GetStreamInfo(&si, js, "F", NULL, &jerr)); uint64_t n = si->State.Msgs; jsStreamInfo_Destroy(si); return n; }
int main(int argc, char **argv) {
    natsConnection *nc = NULL; jsCtx *js = NULL;
    CHECK(natsConnection_ConnectTo(&nc, argv[1])); CHECK(natsConnection_JetStream(&js, nc, NULL));
    jsStreamConfig sc; jsStreamConfig_Init(&sc); const char *s[] = {"f.>"};
    sc.Name = "F"; sc.Subjects = s; sc.SubjectsLen = 1; sc.Retention = js_WorkQueuePolicy;
    CHECK(js_AddStream(NULL, js, &sc, NULL, &jerr));
    CHECK(js_Publish(NULL, js, "f.k", "x", 1, NULL, &jerr));
    jsSubOptions so; jsSubOptions_Init(&so); so.Config.AckPolicy = js_AckExplicit; so.Config.AckWait = 1000000000LL; so.Config.MaxDeliver = 5;
    natsSubscription *a = NULL, *b = NULL; natsMsgList la = {0}, lb = {0};
    CHECK(js_PullSubscribe(&a, js, "f.>", "c", NULL, &so, &jerr));
    CHECK(js_PullSubscribe(&b, js, "f.>", "c", NULL, &so, &jerr));
    CHECK(natsSubscription_Fetch(&la, a, 1, 2000, &jerr));
    usleep(1300 * 1000);
    CHECK(natsSubscription_Fetch(&lb, b, 1, 2000, &jerr));
    printf("redelivered to the second fetcher: %d message(s); stream holds %llu\n", lb.Count, (unsigned long long)msgs(js));
    natsStatus st = natsMsg_AckSync(la.Msgs[0], NULL, &jerr);
    usleep(200 * 1000);
    printf("late AckSync by the first fetcher: %s; stream now holds %llu (0 = the late ack removed a message someone else holds)\n", natsStatus_GetText(st), (unsigned long long)msgs(js));
    natsMsgList_Destroy(&la); natsMsgList_Destroy(&lb); natsSubscription_Destroy(a); natsSubscription_Destroy(b);
    jsCtx_Destroy(js); natsConnection_Destroy(nc); return 0;
}
