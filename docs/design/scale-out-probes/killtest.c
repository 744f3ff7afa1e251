// "pub N": publishes N messages asynchronously, waits for every ack, prints the count acked.
// "count": prints how many messages stream K holds.
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static jsErrCode jerr; static volatile long acked = 0;
static void onAck(jsCtx *js, natsMsg *m, jsPubAck *pa, jsPubAckErr *pae, void *c) { if (!pae) __sync_fetch_and_add(&acked, 1); natsMsg_Destroy(m); }
int main(int argc, char **argv) {
    natsConnection *nc = NULL; jsCtx *js = NULL; jsOptions jo; jsOptions_Init(&jo); jo.PublishAsync.AckHandler = onAck; jo.PublishAsync.MaxPending = 4096;
    if (natsConnection_ConnectTo(&nc, argv[1]) != NATS_OK || natsConnection_JetStream(&js, nc, &jo) != NATS_OK) return 1;
    if (strcmp(argv[2], "pub") == 0) {
        jsStreamConfig sc; jsStreamConfig_Init(&sc); const char *s[] = {"k.>"}; sc.Name = "K"; sc.Subjects = s; sc.SubjectsLen = 1; sc.Retention = js_WorkQueuePolicy;
        if (js_AddStream(NULL, js, &sc, NULL, &jerr) != NATS_OK) return 2;
        int n = atoi(argv[3]); char data[300]; memset(data, 'x', sizeof data);
        for (int i = 0; i < n; i++) { natsMsg *m = NULL; natsMsg_Create(&m, "k.x", NULL, data, sizeof data); if (js_PublishMsgAsync(js, &m, NULL) != NATS_OK) return 3; }
        js_PublishAsyncComplete(js, NULL);
        printf("acked %ld\n", acked); fflush(stdout);
    } else if (strcmp(argv[2], "ack") == 0) {
        jsSubOptions so; jsSubOptions_Init(&so); so.Config.AckPolicy = js_AckExplicit;
        natsSubscription *sub = NULL; if (js_PullSubscribe(&sub, js, "k.>", "c", NULL, &so, &jerr) != NATS_OK) return 5;
        int n = atoi(argv[3]), done = 0;
        while (done < n) { natsMsgList l = {0}; if (natsSubscription_Fetch(&l, sub, n - done > 256 ? 256 : n - done, 2000, &jerr) != NATS_OK) return 6;
            for (int i = 0; i < l.Count; i++) { natsMsg_Ack(l.Msgs[i], NULL); done++; } natsMsgList_Destroy(&l); }
        natsConnection_Flush(nc);
        jsStreamInfo *si = NULL; js_GetStreamInfo(&si, js, "K", NULL, &jerr);
        printf("acked %d (fire-and-forget acks, flushed); stream holds %llu before the kill\n", done, (unsigned long long)si->State.Msgs);
    } else {
        jsStreamInfo *si = NULL; if (js_GetStreamInfo(&si, js, "K", NULL, &jerr) != NATS_OK) return 4;
        printf("after SIGKILL and restart the stream holds %llu\n", (unsigned long long)si->State.Msgs);
    }
    natsConnection_Destroy(nc); return 0;
}
