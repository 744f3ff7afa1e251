#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
static jsErrCode jerr;
int main(int argc, char **argv) {
    natsConnection *nc = NULL; jsCtx *js = NULL;
    if (natsConnection_ConnectTo(&nc, argv[1]) != NATS_OK || natsConnection_JetStream(&js, nc, NULL) != NATS_OK) return 1;
    jsStreamConfig sc; jsStreamConfig_Init(&sc); const char *s[] = {"w.>"};
    sc.Name = "W"; sc.Subjects = s; sc.SubjectsLen = 1; sc.Retention = js_WorkQueuePolicy;
    if (js_AddStream(NULL, js, &sc, NULL, &jerr) != NATS_OK) return 2;
    jsConsumerConfig cc; jsConsumerConfig_Init(&cc); cc.Durable = "workflow"; cc.AckPolicy = js_AckExplicit;
    natsStatus a = js_AddConsumer(NULL, js, "W", &cc, NULL, &jerr);
    printf("first unfiltered durable consumer on a work-queue stream: %s\n", natsStatus_GetText(a));
    jsConsumerConfig_Init(&cc); cc.Durable = "peek"; cc.AckPolicy = js_AckExplicit;
    natsStatus b = js_AddConsumer(NULL, js, "W", &cc, NULL, &jerr);
    printf("second unfiltered durable consumer: %s (jsErrCode %d)\n", natsStatus_GetText(b), (int)jerr);
    natsConnection_Destroy(nc); return 0;
}
