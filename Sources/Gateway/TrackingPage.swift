/// The customers' tracking page (`GET /track`): plain HTML and JavaScript, no build step. It reads
/// the delivery (pickup and drop-off), then follows `GET /v1/deliveries/{id}:track` as
/// Server-Sent Events (read with fetch, so the token can travel in a header) and draws the
/// drone on a map of the route. A tracking link (`POST /v1/deliveries/{id}:trackingLink`) opens
/// it with `#delivery=<id>&token=<tracking token>`: a token that reads that one delivery only,
/// in the fragment, which browsers never send to a server.
let trackingPage = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Track your delivery</title>
<style>
  body { font-family: sans-serif; margin: 1.5em; color: #222; }
  form input { font-family: monospace; width: 22em; }
  #facts { margin: 1em 0; }
  #facts dt { font-weight: bold; float: left; width: 9em; }
  #facts dd { margin: 0 0 .3em 9em; }
  canvas { border: 1px solid #999; background: #f4f8fb; }
</style>
</head>
<body>
<h1>Track your delivery</h1>
<form id="form">
  <label>Delivery id <input id="delivery" required></label>
  <label>Tracking token <input id="key" required type="password"></label>
  <button>Track</button>
</form>
<dl id="facts">
  <dt>Stage</dt><dd id="stage">-</dd>
  <dt>Pickup ETA</dt><dd id="pickupEta">-</dd>
  <dt>Delivery ETA</dt><dd id="deliveryEta">-</dd>
  <dt>Drone</dt><dd id="drone">-</dd>
  <dt>Updates</dt><dd id="count">0</dd>
</dl>
<canvas id="map" width="480" height="360"></canvas>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let route = null, trail = [], updates = 0;

function project(p) {
  const pts = [route.pickup, route.dropoff].concat(trail);
  const lats = pts.map(q => q.latitude || 0), lons = pts.map(q => q.longitude || 0);
  const minLat = Math.min(...lats), maxLat = Math.max(...lats), minLon = Math.min(...lons), maxLon = Math.max(...lons);
  const span = Math.max(maxLat - minLat, maxLon - minLon, 1e-6), c = $("map");
  return [30 + ((p.longitude || 0) - minLon) / span * (c.width - 60), c.height - 30 - ((p.latitude || 0) - minLat) / span * (c.height - 60)];
}

function dot(ctx, p, color, r, label) {
  const [x, y] = project(p);
  ctx.fillStyle = color; ctx.beginPath(); ctx.arc(x, y, r, 0, 2 * Math.PI); ctx.fill();
  if (label) { ctx.fillStyle = "#222"; ctx.fillText(label, x + r + 3, y + 4); }
}

function draw() {
  const c = $("map"), ctx = c.getContext("2d");
  ctx.clearRect(0, 0, c.width, c.height);
  if (!route) return;
  ctx.strokeStyle = "#9ab"; ctx.setLineDash([4, 4]); ctx.beginPath();
  ctx.moveTo(...project(route.pickup)); ctx.lineTo(...project(route.dropoff)); ctx.stroke(); ctx.setLineDash([]);
  dot(ctx, route.pickup, "#2a2", 7, "pickup");
  dot(ctx, route.dropoff, "#c22", 7, "drop-off");
  trail.forEach((p, i) => dot(ctx, p, i === trail.length - 1 ? "#15c" : "#9bd", i === trail.length - 1 ? 8 : 2));
}

function show(event) {
  updates += 1;
  $("count").textContent = String(updates);
  $("stage").textContent = (event.stage || "").replace("DELIVERY_STAGE_", "").replace(/_/g, " ").toLowerCase();
  $("pickupEta").textContent = event.pickupEta ? new Date(event.pickupEta).toLocaleTimeString() : "-";
  $("deliveryEta").textContent = event.deliveryEta ? new Date(event.deliveryEta).toLocaleTimeString() : "-";
  $("drone").textContent = event.droneId || "-";
  if (event.location) trail.push(event.location);
  draw();
}

async function track(id, key) {
  const headers = { "Authorization": "Bearer " + key };
  // Just after its 202 a delivery may still wait on the queue: it has a status (requested) but
  // no route or drone yet. Wait for Workflow to schedule it.
  for (;;) {
    const status = await fetch("/v1/deliveries/" + encodeURIComponent(id) + "/status", { headers });
    if (!status.ok) { $("stage").textContent = "error: " + (await status.json()).message; return; }
    const stage = (await status.json()).stage;
    // Dead-lettered before it was scheduled: there is no delivery to draw.
    if (stage === "DELIVERY_STAGE_FAILED") { $("stage").textContent = "failed"; return; }
    if (stage !== "DELIVERY_STAGE_REQUESTED") break;
    $("stage").textContent = "requested";
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  const answer = await fetch("/v1/deliveries/" + encodeURIComponent(id), { headers });
  if (!answer.ok) { $("stage").textContent = "error: " + (await answer.json()).message; return; }
  const delivery = await answer.json();
  route = { pickup: delivery.pickupLocation || {}, dropoff: delivery.dropoffLocation || {} };
  trail = []; updates = 0; draw();
  // The stream resumes where it left off when it drops (a gateway or Delivery replica going
  // away): each event's id is its sequence, and Last-Event-ID asks for what came after it.
  const final = ["DELIVERY_STAGE_COMPLETED", "DELIVERY_STAGE_CANCELLED", "DELIVERY_STAGE_FAILED"];
  let lastId = null, finished = false;
  for (let attempt = 0; !finished && attempt < 30; attempt++) {
    if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 1000));
    const asked = Object.assign({ "Accept": "text/event-stream" }, headers);
    if (lastId !== null) asked["Last-Event-ID"] = lastId;
    let stream;
    try { stream = await fetch("/v1/deliveries/" + encodeURIComponent(id) + ":track", { headers: asked }); } catch (e) { continue; }
    if (!stream.ok) { $("stage").textContent = "error: " + (await stream.json()).message; return; }
    const reader = stream.body.getReader(), decoder = new TextDecoder();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end); buffer = buffer.slice(end + 2);
          const kind = (block.match(/^event: (.*)$/m) || [])[1], data = (block.match(/^data: (.*)$/m) || [])[1];
          const eventId = (block.match(/^id: (.*)$/m) || [])[1];
          if (!data) continue;
          if (kind === "error") {
            const error = JSON.parse(data);
            $("stage").textContent = "error: " + error.message;
            if (error.code !== 14) finished = true;  // UNAVAILABLE: try again; anything else stands
            continue;
          }
          if (eventId !== undefined) lastId = eventId;
          const event = JSON.parse(data);
          show(event);
          if (final.includes(event.stage)) finished = true;
        }
      }
    } catch (e) { /* the connection dropped: resume */ }
  }
}

$("form").addEventListener("submit", (e) => { e.preventDefault(); track($("delivery").value, $("key").value); });
const params = new URLSearchParams(location.hash.slice(1));
const token = params.get("token") || params.get("key");
if (params.get("delivery") && token) {
  $("delivery").value = params.get("delivery"); $("key").value = token;
  track(params.get("delivery"), token);
}
</script>
</body>
</html>
"""#
