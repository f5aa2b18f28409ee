"use strict";
// The labeling page: fetch a leased pair from /api/next, play both segments as looping
// animations, send the answer to /api/answer, undo with /api/undo. Two views, as /api/next
// says: the moving dot's "diagram", drawn on canvases from the stored positions, and "clips",
// the env's own frames, one PNG sheet per segment from /api/clip/<id>, played in step on the
// same canvases. Nothing is loaded from outside the app.

(function () {
  const config = JSON.parse(document.getElementById("config").textContent);
  const field = config.env.native || {};  // the moving dot's field; other envs have none (and no diagram)
  const [CX, CY] = field.centre || [0, 0];
  const COLOURS = { left: "#4cc9f0", right: "#ffb703", centre: "#7ee787", wall: "#3a4250" };
  const ANSWER_TEXT = { segment1: "left better", segment2: "right better", equal: "equal", incomparable: "can't tell" };
  const $ = (id) => document.getElementById(id);

  const clips = {
    left: { canvas: $("canvas-left"), caption: $("caption-left"), message: $("message-left"), figure: $("canvas-left").closest(".clip"), colour: COLOURS.left },
    right: { canvas: $("canvas-right"), caption: $("caption-right"), message: $("message-right"), figure: $("canvas-right").closest(".clip"), colour: COLOURS.right },
  };
  const state = { comparison: null, scene: null, busy: false, undoStack: [], pollTimer: null };

  // --- talking to the app ------------------------------------------------------------------

  async function api(route, body, options = {}) {
    const response = await fetch(route, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body || {}), ...options,
    });
    let data = null;
    try { data = await response.json(); } catch (e) { /* not JSON: reported below */ }
    if (!response.ok) {
      const error = new Error((data && data.error) || `${response.status} ${response.statusText}`);
      error.status = response.status;
      throw error;
    }
    return data;
  }

  function release(comparison, keepalive = false) {
    if (!comparison) return Promise.resolve();
    return api("/api/release", { comparison_id: comparison.id, token: comparison.token }, { keepalive }).catch(() => {});
  }

  async function withBusy(work) {
    if (state.busy) return;
    state.busy = true;
    document.body.dataset.busy = "1";
    setButtons();
    try { await work(); } finally {
      state.busy = false;
      delete document.body.dataset.busy;
      setButtons();
    }
  }

  async function loadNext() {
    clearTimeout(state.pollTimer);
    const result = await api("/api/next");
    showProgress(result.progress);
    if (result.comparison) await show(result.comparison, result.view);
    else showEmpty(result.message, result.command);
  }

  // the next pair; when the app cannot be reached, say so and try again in a few seconds
  function loadNextOrRetry() {
    return loadNext().catch((error) => {
      setStatus(`Cannot load the next pair (${error.message}); retrying…`, "error");
      const retry = () => { if (state.busy) state.pollTimer = setTimeout(retry, 1000); else withBusy(loadNextOrRetry); };
      state.pollTimer = setTimeout(retry, 3000);
    });
  }

  function submit(answer) {
    if (!state.comparison || state.busy) return;
    const comparison = state.comparison;
    flash(answer);
    return withBusy(async () => {
      try {
        const result = await api("/api/answer", { comparison_id: comparison.id, token: comparison.token, answer });
        state.undoStack.push({ id: comparison.id, token: comparison.token, answer });
        setStatus(`Saved #${comparison.id}: ${ANSWER_TEXT[answer]}.`, "saved");
        showProgress(result.progress);
      } catch (error) {
        if (error.status !== 404 && error.status !== 409) {  // nothing stored: keep the pair, a retry is harmless
          setStatus(`Not saved: ${error.message}. Try again.`, "error");
          for (const clip of Object.values(clips)) clip.figure.classList.remove("chosen");
          return;
        }
        setStatus(`${error.message}.`, "error");  // someone else answered it: move on
      }
      state.comparison = null;
      await loadNextOrRetry();
    });
  }

  function undo() {
    if (!state.undoStack.length) return;
    const last = state.undoStack[state.undoStack.length - 1];
    return withBusy(async () => {
      try {
        const result = await api("/api/undo", { comparison_id: last.id, token: last.token });
        state.undoStack.pop();
        await release(state.comparison);  // the pair on screen goes back to the pool
        await show(result.comparison, result.view);
        showProgress(result.progress);
        setStatus(`Undid #${last.id} (${ANSWER_TEXT[last.answer]}); answer it again.`, "");
      } catch (error) {
        if (error.status === 404 || error.status === 409) state.undoStack.pop();
        setStatus(`Cannot undo: ${error.message}`, "error");
      }
    });
  }

  // --- what the page shows -----------------------------------------------------------------

  function setStatus(text, kind) {
    const status = $("status");
    status.textContent = text;
    status.className = `status ${kind || ""}`;
  }

  function setButtons() {
    const off = state.busy || !state.comparison;
    document.querySelectorAll(".answer").forEach((b) => { b.disabled = off; });
    $("undo").disabled = state.busy || !state.undoStack.length;
  }

  function showProgress(p) {
    if (!p) return;
    $("progress-text").innerHTML =
      `<b>${p.labeled}</b> labeled by hand <span class="muted">(${p.human_train} train · ${p.human_validation} held-out)</span>` +
      ` · <b>${p.pending}</b> pending` + (p.leased ? ` <span class="muted">(${p.leased} on screen)</span>` : "") +
      ` · <b>${p.labels_per_minute}</b> labels/min`;
    const total = p.labeled + p.pending;
    $("progress-fill").style.width = `${total ? (100 * p.labeled) / total : 0}%`;
  }

  // a pair is ready once both its clips are loaded (a diagram needs nothing more), so that
  // nobody answers before seeing them, and both start together
  async function show(comparison, view) {
    state.comparison = comparison;
    if (state.scene && state.scene.kind === "clips") state.scene.views.forEach((v) => v.bitmap && v.bitmap.close());
    state.scene = null;
    for (const clip of Object.values(clips)) showMessage(clip, "");
    state.scene = view === "clips" ? await makeClipScene(comparison) : makeScene(comparison);
    document.body.dataset.state = "ready";
    document.body.dataset.comparisonId = comparison.id;
    $("empty").hidden = true;
    clips.left.caption.textContent = describe(comparison.segment1, view);
    clips.right.caption.textContent = describe(comparison.segment2, view);
    for (const clip of Object.values(clips)) clip.figure.classList.remove("chosen");
    setButtons();
  }

  function showMessage(clip, text) {
    clip.message.textContent = text;
    clip.message.hidden = !text;
  }

  function showEmpty(message, command) {
    state.comparison = null;
    state.scene = null;
    document.body.dataset.state = "empty";
    delete document.body.dataset.comparisonId;
    $("empty").hidden = false;
    $("empty-message").textContent = message;
    $("empty-command").textContent = command;
    setButtons();
    const poll = () => {
      if (state.busy) { state.pollTimer = setTimeout(poll, 1000); return; }
      withBusy(() => loadNext().catch(() => showEmpty(message, command)));
    };
    state.pollTimer = setTimeout(poll, 4000);
  }

  function describe(segment, view) {
    const k = segment.actions.length;
    if (view === "clips") {
      const end = segment.absorbing.indexOf(true);  // the first step after the episode ended
      return `${k} steps` + (end >= 0 ? ` · the episode ends at step ${end}` : "");
    }
    const [first, last] = [segment.positions[0], segment.positions[k]];
    const stays = first[0] === last[0] && first[1] === last[1];
    if (k === 1) {
      const name = config.action_names[segment.actions[0]];
      if (segment.actions[0] === 0) return "no-op: the dot stays where it is";
      return stays ? `${name}: blocked by the wall, the dot stays` : `one step ${name}`;
    }
    return `${k} steps` + (stays ? " · ends where it started" : "");
  }

  function flash(answer) {
    const button = document.querySelector(`.answer[data-answer="${answer}"]`);
    button.classList.add("pressed");
    setTimeout(() => button.classList.remove("pressed"), 150);
    if (answer === "segment1") clips.left.figure.classList.add("chosen");
    if (answer === "segment2") clips.right.figure.classList.add("chosen");
  }

  // --- drawing -----------------------------------------------------------------------------

  // Both clips use the same zoom, so that the sizes of their moves compare; each is centred on
  // its own segment. A field unit is one pixel of the env's 210 x 160 frame.
  function makeScene(comparison) {
    const segments = [comparison.segment1, comparison.segment2];
    let extent = 0;
    const boxes = segments.map((segment) => {
      const xs = segment.positions.map((p) => p[0]), ys = segment.positions.map((p) => p[1]);
      const box = { x0: Math.min(...xs), x1: Math.max(...xs), y0: Math.min(...ys), y1: Math.max(...ys) };
      extent = Math.max(extent, box.x1 - box.x0, ((box.y1 - box.y0) * 4) / 3);
      return box;
    });
    // the path takes at most ~60% of the width, leaving room for the inset; one move fills a sixth
    const w = Math.max(extent / 0.6 + 4, 6), h = (w * 3) / 4;
    const k = segments[0].actions.length;
    const stepMs = Math.min(450, Math.max(40, 2500 / k));
    return {
      k, stepMs, hold0: 350, hold1: 900, t0: performance.now(), w, h,
      views: segments.map((segment, i) => ({
        segment,
        x0: (boxes[i].x0 + boxes[i].x1) / 2 - w / 2,
        y0: (boxes[i].y0 + boxes[i].y1) / 2 - h / 2,
      })),
    };
  }

  let hatch = null;
  function wallPattern(ctx) {
    if (!hatch) {
      const tile = document.createElement("canvas");
      tile.width = tile.height = 8;
      const t = tile.getContext("2d");
      t.strokeStyle = COLOURS.wall;
      t.lineWidth = 2;
      t.beginPath();
      t.moveTo(0, 8); t.lineTo(8, 0); t.moveTo(-2, 2); t.lineTo(2, -2); t.moveTo(6, 10); t.lineTo(10, 6);
      t.stroke();
      hatch = tile;
    }
    return ctx.createPattern(hatch, "repeat");
  }

  function arrowHead(ctx, x, y, dx, dy, size) {
    const n = Math.hypot(dx, dy) || 1, ux = dx / n, uy = dy / n;
    ctx.beginPath();
    ctx.moveTo(x + ux * size * 0.35, y + uy * size * 0.35);
    ctx.lineTo(x - ux * size * 0.65 - uy * size * 0.5, y - uy * size * 0.65 + ux * size * 0.5);
    ctx.lineTo(x - ux * size * 0.65 + uy * size * 0.5, y - uy * size * 0.65 - ux * size * 0.5);
    ctx.closePath();
    ctx.fill();
  }

  function position(segment, t) {  // t: fractional step index in [0, k]
    const k = segment.actions.length, i = Math.min(Math.floor(t), k - 1);
    let f = Math.min(Math.max(t - i, 0), 1);
    if (k <= 3) f = f < 0.5 ? 2 * f * f : 1 - 2 * (1 - f) * (1 - f);  // ease a single move; glide along long ones
    const [a, b] = [segment.positions[i], segment.positions[i + 1]];
    return [a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f];
  }

  // the canvas at the screen's pixel density, sized to its box; null while it has no size
  function canvasContext(canvas, W, H) {
    if (!W || !H) return null;
    const dpr = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(W * dpr) || canvas.height !== Math.round(H * dpr)) {
      canvas.width = Math.round(W * dpr);
      canvas.height = Math.round(H * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    return ctx;
  }

  function drawClip(clip, view, scene, t) {
    const canvas = clip.canvas, W = canvas.clientWidth, H = canvas.clientHeight;
    const ctx = canvasContext(canvas, W, H);
    if (!ctx) return;
    const s = W / scene.w;  // screen pixels per field unit
    const X = (x) => (x - view.x0) * s, Y = (y) => (y - view.y0) * s;
    const segment = view.segment, positions = segment.positions, k = segment.actions.length;
    const start = positions[0], end = positions[k];
    const r0 = Math.hypot(start[0] - CX, start[1] - CY);

    // the field: closer-than-the-start disc tinted, pixel grid, walls
    ctx.fillStyle = "#0a0e14";
    ctx.fillRect(0, 0, W, H);
    ctx.beginPath();
    ctx.arc(X(CX), Y(CY), r0 * s, 0, 2 * Math.PI);
    ctx.fillStyle = "rgba(126, 231, 135, 0.07)";
    ctx.fill();
    if (s >= 7) {
      ctx.strokeStyle = "rgba(255, 255, 255, 0.05)";
      ctx.lineWidth = 1;
      ctx.beginPath();
      for (let x = Math.ceil(view.x0 - 0.5) + 0.5; x < view.x0 + scene.w; x++) { ctx.moveTo(X(x), 0); ctx.lineTo(X(x), H); }
      for (let y = Math.ceil(view.y0 - 0.5) + 0.5; y < view.y0 + scene.h; y++) { ctx.moveTo(0, Y(y)); ctx.lineTo(W, Y(y)); }
      ctx.stroke();
    }
    ctx.fillStyle = wallPattern(ctx);
    const [wl, wr, wt, wb] = [X(field.x_min - 0.5), X(field.x_max + 0.5), Y(field.y_min - 0.5), Y(field.y_max + 0.5)];
    if (wl > 0) ctx.fillRect(0, 0, wl, H);
    if (wr < W) ctx.fillRect(wr, 0, W - wr, H);
    if (wt > 0) ctx.fillRect(0, 0, W, wt);
    if (wb < H) ctx.fillRect(0, wb, W, H - wb);

    // the start's distance to the centre: a dashed circle; ending inside it is closer
    ctx.setLineDash([7, 6]);
    ctx.strokeStyle = "rgba(126, 231, 135, 0.6)";
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    ctx.arc(X(CX), Y(CY), r0 * s, 0, 2 * Math.PI);
    ctx.stroke();
    ctx.setLineDash([2, 6]);
    ctx.strokeStyle = "rgba(126, 231, 135, 0.35)";
    ctx.beginPath();
    ctx.moveTo(X(start[0]), Y(start[1]));
    ctx.lineTo(X(CX), Y(CY));
    ctx.stroke();
    ctx.setLineDash([]);
    drawCentre(ctx, X(CX), Y(CY), W, H, s, insetBox(W));

    // the path: faint in full, bright as far as the dot has come; the moves as arrows
    const lineWidth = Math.max(2.5, Math.min(s * 0.16, 7));
    ctx.lineCap = ctx.lineJoin = "round";
    ctx.strokeStyle = clip.colour;
    ctx.fillStyle = clip.colour;
    ctx.globalAlpha = 0.3;
    ctx.lineWidth = lineWidth;
    ctx.beginPath();
    positions.forEach((p, i) => (i ? ctx.lineTo(X(p[0]), Y(p[1])) : ctx.moveTo(X(p[0]), Y(p[1]))));
    ctx.stroke();
    for (const p of positions) { ctx.beginPath(); ctx.arc(X(p[0]), Y(p[1]), lineWidth * 0.9, 0, 2 * Math.PI); ctx.fill(); }
    ctx.globalAlpha = 1;
    const here = position(segment, t);
    ctx.beginPath();
    ctx.moveTo(X(start[0]), Y(start[1]));
    for (let i = 1; i <= Math.min(Math.floor(t), k); i++) ctx.lineTo(X(positions[i][0]), Y(positions[i][1]));
    ctx.lineTo(X(here[0]), Y(here[1]));
    ctx.stroke();

    // start ring, the dot, and on top the arrowhead of the last move
    const dotRadius = Math.max(5, Math.min(s * 0.2, 11));
    ctx.strokeStyle = "#ffffff";
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.arc(X(start[0]), Y(start[1]), dotRadius + 5, 0, 2 * Math.PI);
    ctx.stroke();
    ctx.shadowColor = clip.colour;
    ctx.shadowBlur = 18;
    ctx.fillStyle = "#ffffff";
    ctx.beginPath();
    ctx.arc(X(here[0]), Y(here[1]), dotRadius, 0, 2 * Math.PI);
    ctx.fill();
    ctx.shadowBlur = 0;
    let last = k;  // the last step that moved: its direction is the arrow at the end of the path
    while (last > 0 && positions[last][0] === positions[last - 1][0] && positions[last][1] === positions[last - 1][1]) last--;
    if (last > 0) {
      const [a, b] = [positions[last - 1], positions[last]];
      ctx.fillStyle = clip.colour;
      ctx.strokeStyle = "#0a0e14";
      ctx.lineWidth = 1.5;
      arrowHead(ctx, X(b[0]), Y(b[1]), b[0] - a[0], b[1] - a[1], Math.max(14, Math.min(s * 0.55, 26)));
      ctx.stroke();
    }
    if (end[0] === start[0] && end[1] === start[1] && k === 1) {
      ctx.font = "600 13px system-ui, sans-serif";
      ctx.fillStyle = "rgba(255, 255, 255, 0.75)";
      ctx.textAlign = "center";
      ctx.fillText("stays", X(start[0]), Y(start[1]) + dotRadius + 22);
    }

    drawScaleBar(ctx, s, H);
    drawInset(ctx, clip, view, scene, here, W);
  }

  function insetBox(W) {  // where the whole-field inset sits: top right
    const w = Math.round(W * 0.27);
    return { x0: W - w - 10, y0: 10, w, h: (field.height * w) / field.width };
  }

  // the centre: a target where it is in view, otherwise an arrow at the edge pointing to it
  // (stopped short of the inset when the way to the edge crosses it)
  function drawCentre(ctx, x, y, W, H, s, inset) {
    const margin = 34;
    ctx.strokeStyle = ctx.fillStyle = COLOURS.centre;
    ctx.lineWidth = 2;
    if (x > margin && x < W - margin && y > margin && y < H - margin) {
      const r = Math.max(8, Math.min(s * 0.5, 16));
      ctx.beginPath();
      ctx.arc(x, y, r, 0, 2 * Math.PI);
      ctx.moveTo(x - r - 6, y); ctx.lineTo(x + r + 6, y);
      ctx.moveTo(x, y - r - 6); ctx.lineTo(x, y + r + 6);
      ctx.stroke();
      return;
    }
    const dx = x - W / 2, dy = y - H / 2;
    let scale = Math.min((W / 2 - margin) / Math.abs(dx || 1e-9), (H / 2 - margin) / Math.abs(dy || 1e-9));
    const box = [inset.x0 - margin, inset.x0 + inset.w + margin, inset.y0 - margin, inset.y0 + inset.h + margin];
    const [tx0, tx1] = [(box[0] - W / 2) / dx, (box[1] - W / 2) / dx].sort((a, b) => a - b);
    const [ty0, ty1] = [(box[2] - H / 2) / dy, (box[3] - H / 2) / dy].sort((a, b) => a - b);
    const enter = Math.max(tx0, ty0), leave = Math.min(tx1, ty1);
    if (enter < leave && enter > 0 && enter < scale) scale = enter;
    const ex = W / 2 + dx * scale, ey = H / 2 + dy * scale;
    ctx.beginPath();
    ctx.arc(ex, ey, 17, 0, 2 * Math.PI);
    ctx.fillStyle = "rgba(10, 14, 20, 0.8)";
    ctx.fill();
    ctx.stroke();
    ctx.fillStyle = COLOURS.centre;
    arrowHead(ctx, ex + (dx / Math.hypot(dx, dy)) * 3, ey + (dy / Math.hypot(dx, dy)) * 3, dx, dy, 16);
    ctx.font = "600 12px system-ui, sans-serif";
    ctx.textAlign = "center";
    const ly = ey + (ey > H / 2 ? -26 : 32);
    ctx.fillText("centre", Math.min(Math.max(ex, 30), W - 30), ly);
  }

  function drawScaleBar(ctx, s, H) {
    const units = [1, 2, 5, 10, 20, 50].find((u) => u * s >= 40) || 50;
    const x = 14, y = H - 16;
    ctx.strokeStyle = ctx.fillStyle = "rgba(255, 255, 255, 0.6)";
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.moveTo(x, y - 4); ctx.lineTo(x, y); ctx.lineTo(x + units * s, y); ctx.lineTo(x + units * s, y - 4);
    ctx.stroke();
    ctx.font = "12px system-ui, sans-serif";
    ctx.textAlign = "left";
    ctx.fillText(`${units} px`, x + units * s + 6, y + 4);
  }

  // the whole field as the env renders it (white dot on black), the centre, and where the zoom is
  function drawInset(ctx, clip, view, scene, here, W) {
    const { x0, y0, w, h } = insetBox(W), m = w / field.width;
    ctx.save();
    ctx.globalAlpha = 0.9;
    ctx.translate(x0, y0);
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, w, h);
    ctx.strokeStyle = "rgba(255, 255, 255, 0.28)";
    ctx.lineWidth = 1;
    ctx.strokeRect(-0.5, -0.5, w + 1, h + 1);
    ctx.beginPath();
    ctx.rect(0, 0, w, h);
    ctx.clip();
    const c = [(CX + 0.5) * m, (CY + 0.5) * m];
    ctx.strokeStyle = COLOURS.centre;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    ctx.arc(c[0], c[1], 5, 0, 2 * Math.PI);
    ctx.moveTo(c[0] - 9, c[1]); ctx.lineTo(c[0] + 9, c[1]);
    ctx.moveTo(c[0], c[1] - 9); ctx.lineTo(c[0], c[1] + 9);
    ctx.stroke();
    ctx.strokeStyle = clip.colour;
    ctx.strokeRect((view.x0 + 0.5) * m, (view.y0 + 0.5) * m, scene.w * m, scene.h * m);
    const half = (field.width - field.x_max - 1) * m;  // the dot's half-size: it is 9 x 9 field pixels
    ctx.fillStyle = "#fff";
    ctx.fillRect((here[0] + 0.5) * m - half - 0.5 * m, (here[1] + 0.5) * m - half - 0.5 * m, 2 * half + m, 2 * half + m);
    ctx.restore();
  }

  // --- clips: the env's own frames ---------------------------------------------------------

  // A clip's frames come as one sheet (left to right, top to bottom); a segment that cannot be
  // replayed, or whose clip fails to load, shows why instead. Both clips share one clock, so they
  // play in step: frame i of the left at the same moment as frame i of the right.
  async function makeClipScene(comparison) {
    const segments = [comparison.segment1, comparison.segment2];
    const views = await Promise.all(segments.map((segment, i) => loadClip(segment, i ? clips.right : clips.left)));
    const k = segments[0].actions.length;
    const stepMs = Math.min(450, Math.max(1000 / (config.fps || 30), 2000 / k));  // the env's speed, but a clip lasts >= 2 s
    return { kind: "clips", k, stepMs, hold0: 300, hold1: 700, t0: performance.now(), views };
  }

  async function loadClip(segment, clip) {
    const view = { segment, clip: segment.clip, bitmap: null, end: segment.absorbing.indexOf(true) };
    if (!segment.clip) {
      showMessage(clip, segment.clip_message);
      return view;
    }
    try {
      const response = await fetch(segment.clip.url);
      if (!response.ok) {
        let message = `${response.status} ${response.statusText}`;
        try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
        throw new Error(message);
      }
      view.bitmap = await createImageBitmap(await response.blob());
    } catch (error) {
      showMessage(clip, `Cannot show this clip: ${error.message}`);
    }
    return view;
  }

  function drawFrame(clip, view, scene, i) {
    const canvas = clip.canvas, W = canvas.clientWidth, H = canvas.clientHeight;
    const ctx = canvasContext(canvas, W, H);
    if (!ctx) return;
    ctx.fillStyle = "#0a0e14";
    ctx.fillRect(0, 0, W, H);
    if (!view.bitmap) return;
    // the frame as large as fits, centred (letterboxed): the env's aspect ratio is kept
    const { width: fw, height: fh, columns } = view.clip;
    const s = Math.min(W / fw, (H - 8) / fh), dw = fw * s, dh = fh * s, dx = (W - dw) / 2, dy = (H - 8 - dh) / 2;
    ctx.imageSmoothingEnabled = true;
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(view.bitmap, (i % columns) * fw, Math.floor(i / columns) * fh, fw, fh, dx, dy, dw, dh);
    // where in the clip we are: a bar under the frame, and a badge once the episode is over
    ctx.fillStyle = "rgba(255, 255, 255, 0.12)";
    ctx.fillRect(dx, H - 5, dw, 3);
    ctx.fillStyle = clip.colour;
    ctx.fillRect(dx, H - 5, (dw * i) / scene.k, 3);
    ctx.font = "600 12px system-ui, sans-serif";
    ctx.textAlign = "left";
    const label = `step ${i} / ${scene.k}` + (view.end >= 0 && i >= view.end ? " · episode over" : "");
    const tw = ctx.measureText(label).width;
    ctx.fillStyle = "rgba(10, 14, 20, 0.72)";
    ctx.fillRect(dx + 8, dy + 8, tw + 14, 22);
    ctx.fillStyle = view.end >= 0 && i >= view.end ? "#ff7b72" : "#e6edf3";
    ctx.fillText(label, dx + 15, dy + 23);
  }

  function frame(now) {
    const scene = state.scene;
    if (scene) {
      const cycle = scene.hold0 + scene.k * scene.stepMs + scene.hold1;
      const phase = (now - scene.t0) % cycle;
      const t = Math.min(Math.max((phase - scene.hold0) / scene.stepMs, 0), scene.k);
      if (scene.kind === "clips") {
        const i = Math.floor(t);
        if (document.body.dataset.frame !== String(i)) document.body.dataset.frame = i;  // which frame is on screen
        drawFrame(clips.left, scene.views[0], scene, i);
        drawFrame(clips.right, scene.views[1], scene, i);
      } else {
        drawClip(clips.left, scene.views[0], scene, t);
        drawClip(clips.right, scene.views[1], scene, t);
      }
    }
    requestAnimationFrame(frame);
  }

  // --- input -------------------------------------------------------------------------------

  document.querySelectorAll(".answer").forEach((button) => {
    button.addEventListener("click", () => { button.blur(); submit(button.dataset.answer); });
  });
  $("undo").addEventListener("click", () => { $("undo").blur(); undo(); });

  const KEYS = {
    ArrowLeft: "segment1", a: "segment1", 1: "segment1",
    ArrowRight: "segment2", d: "segment2", 2: "segment2",
    ArrowDown: "equal", "=": "equal", e: "equal",
    x: "incomparable", c: "incomparable",
  };
  document.addEventListener("keydown", (event) => {
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    if ((event.ctrlKey || event.metaKey) && key === "z") { event.preventDefault(); undo(); return; }
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    if (key === "z" || key === "u" || key === "Backspace") { event.preventDefault(); undo(); return; }
    if (KEYS[key]) { event.preventDefault(); submit(KEYS[key]); }
  });

  // a pair on screen when the page closes goes straight back to the pool
  window.addEventListener("pagehide", () => release(state.comparison, true));

  requestAnimationFrame(frame);
  withBusy(loadNextOrRetry);
})();
