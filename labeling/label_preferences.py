"""Label preferences by hand: a local web page that shows pending comparisons and stores the answers.

    python make_preferences_db.py --db queries.db --oracle none --segment-length 25 --n-segments 400 --n-comparisons 200
    python labeling/label_preferences.py --db queries.db          # open the printed URL, answer with the arrow keys
    python train_reward_model.py --db queries.db --out reward_model.pt --label-source human

    python make_preferences_db.py --env-id MountainCar-v0 --db car.db --oracle none --n-segments 400 --n-comparisons 200
    python labeling/label_preferences.py --db car.db --question "Which car gets closer to the flag?"

The human in RLHF (C17 2.2: people watched pairs of short clips and said which was closer to
the goal). Serves a page on 127.0.0.1 that plays the two segments of the next pending comparison
side by side, looping in sync, and writes each answer (left better, right better, equal, or
can't tell = incomparable) at once into the same preferences DB, as a 'human' label with its
time and labeler. The split the generator assigned is kept, so held-out rows stay held out.
Several pages, or several servers on one DB file, can label at the same time: each pending pair
is leased to one page for --lease-minutes (db.lease_next_comparison), and the trainer can read
the DB while this writes (WAL).

What a clip is: on the moving dot, a diagram of the field drawn from the stored positions. On
any other env (the DB says which), the env's own rgb_array rendering: the server replays the
segment's episode from its reset seed and actions (db.segment_replay), renders its k + 1 frames
(an episode that ended inside the segment holds its last frame), scales them to --clip-width
and serves them as one PNG sheet, keeping the last few in memory. A renderer that cannot start
(MuJoCo without an offscreen GL: set MUJOCO_GL=egl) fails before serving, in one line.

Routes: GET / (the page), POST /api/next, /api/answer, /api/undo, /api/release, GET /api/progress,
GET /api/clip/<segment id> (the PNG sheet of a segment's frames, left to right, top to bottom).
"""

import argparse
import getpass
import io
import math
import os
import re
import shlex
import socket
import sqlite3
import sys
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import numpy as np
from flask import Flask, abort, jsonify, make_response, render_template, request
from PIL import Image
from werkzeug.exceptions import HTTPException
from werkzeug.serving import WSGIRequestHandler, make_server

HERE = os.path.dirname(os.path.abspath(__file__))  # templates/ and static/
sys.path.insert(0, os.path.dirname(HERE))  # the repo's shared modules, rlhf/
from rlhf import cli, db, envs
from rlhf import moving_dot as md

# what the page's buttons send, and what each answer stores: (status, mu1), mu2 = 1 - mu1
ANSWERS = {"segment1": ("labeled", 1.0), "segment2": ("labeled", 0.0), "equal": ("labeled", 0.5),
           "incomparable": ("incomparable", None)}
TOKEN = re.compile(r"[0-9a-f]{32}")
CLIP_CACHE = 32  # rendered clips kept in memory: a page's pair, an undo's, and a few labelers' more
SHEET_WIDTH = 4000  # a clip's frames are laid out in rows of at most this many pixels
DOT_QUESTION = "Which clip moves the dot toward the centre?"
CLIP_QUESTION = "Which clip do you prefer?"  # C17 2.2: the person says which segment they prefer
NOT_REPLAYABLE = "cannot be replayed: the DB holds no reset seed and actions for it"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Serve a local web page for labeling the pending comparisons of a preferences DB.")
    p.add_argument("--db", default="preferences.db", help="the preferences DB to label (make_preferences_db.py --oracle none)")
    p.add_argument("--env-id", default=None,
                   help="the env the DB was made for (default: the DB's; needed for your own env: your_module:YourEnv-v0)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=cli.nonnegative_int, default=8000, help="port to listen on (0: any free port)")
    p.add_argument("--labeler", default=None, help="name stored with each answer (default: your user name)")
    p.add_argument("--lease-minutes", type=cli.positive_float, default=5.0,
                   help="a pair shown and not answered for this long goes back to the pool")
    p.add_argument("--question", default=None,
                   help="the question above the clips, say what the goal is (default on the moving dot: the centre;"
                        " elsewhere: which clip do you prefer)")
    p.add_argument("--clip-width", type=cli.positive_int, default=400,
                   help="the width in pixels that an env's rendered frames are scaled down to (never up)")
    args = p.parse_args(argv)
    args.labeler = args.labeler or _user_name()
    return args


def _user_name():
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in some containers
        return "human"


class QuietRequestHandler(WSGIRequestHandler):
    """Logs failed requests only: an hour of labeling would otherwise print thousands of lines."""

    def log_request(self, code="-", size="-"):
        if str(code).isdigit() and int(code) >= 400:
            super().log_request(code, size)


def more_queries_command(path):
    """The command that appends more queries to the DB, with a seed no earlier run used by default."""
    meta = db.read_metadata(path)
    env_id = meta["env"]["env_id"]
    env_flag = "" if env_id == envs.DEFAULT_ENV_ID else f" --env-id {shlex.quote(env_id)}"
    return (f"python make_preferences_db.py --db {shlex.quote(path)}{env_flag} --append --oracle none"
            f" --seed {len(meta['generator_runs']) + 1} --segment-length {meta['segment_length']}"
            " --n-segments 200 --n-comparisons 100")


def replay_frames(env, reset_seed, start_step, episode_actions, discrete):
    """The env's rendering of a segment: reset with its episode's seed, step the episode's actions
    up to the segment's start, then one frame at the start and one after each of the segment's
    actions (k + 1). After the episode terminates inside the segment the segment is absorbing
    (db.py): the last frame repeats."""
    env.reset(seed=reset_seed)
    ended = False
    for action in episode_actions[:start_step]:  # a segment may start after its episode's end: then every frame is the last
        if not ended:
            ended = env.step(int(action) if discrete else action)[2]
    frames = [env.render()]
    for action in episode_actions[start_step:]:
        if not ended:
            ended = env.step(int(action) if discrete else action)[2]
            frames.append(env.render())
        else:
            frames.append(frames[-1])
    return frames


def sheet_columns(n_frames, width):
    """Frames per row of a clip's sheet: rows of at most SHEET_WIDTH pixels, filled evenly."""
    rows = math.ceil(n_frames / max(1, SHEET_WIDTH // width))
    return math.ceil(n_frames / rows)


def frame_sheet(frames, width, height):
    """The frames scaled to width x height, laid out left to right and top to bottom, as a PNG."""
    columns = sheet_columns(len(frames), width)
    sheet = np.zeros((math.ceil(len(frames) / columns) * height, columns * width, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        row, column = divmod(i, columns)
        scaled = Image.fromarray(np.ascontiguousarray(frame[..., :3])).resize((width, height), Image.Resampling.BILINEAR)
        sheet[row * height:(row + 1) * height, column * width:(column + 1) * width] = np.asarray(scaled)
    out = io.BytesIO()
    Image.fromarray(sheet).save(out, format="PNG")
    return out.getvalue()


class Clips:
    """Renders segments as the env draws them. One env on one thread (an OpenGL context, MuJoCo's,
    belongs to the thread that made it); the last CLIP_CACHE clips are kept, and a clip asked for
    twice at once is rendered once."""

    def __init__(self, env_spec, max_width):
        self.discrete = env_spec.discrete
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="render")
        try:
            self.env = self.worker.submit(envs.make_render_env, env_spec).result()  # an EnvError that names the fix
        except BaseException:
            self.worker.shutdown(wait=False)
            raise
        frame_height, frame_width = self.worker.submit(self.env.render).result().shape[:2]
        self.width = min(max_width, frame_width)
        self.height = max(1, round(frame_height * self.width / frame_width))
        self.fps = float(self.env.metadata.get("render_fps") or 30)
        self.cache = OrderedDict()
        self.lock = threading.Lock()

    def geometry(self, segment_id, k):
        """Where the page finds a segment's clip and how its sheet is laid out."""
        return {"url": f"/api/clip/{segment_id}", "frames": k + 1, "width": self.width, "height": self.height,
                "columns": sheet_columns(k + 1, self.width)}

    def _render(self, reset_seed, start_step, episode_actions):
        frames = replay_frames(self.env, reset_seed, start_step, episode_actions, self.discrete)
        return frame_sheet(frames, self.width, self.height)

    def sheet(self, reset_seed, start_step, episode_actions) -> bytes:
        # keyed by what is replayed, not by the segment's id: a DB replaced under the server reuses ids
        key = (reset_seed, start_step, episode_actions.tobytes())
        with self.lock:
            future = self.cache.get(key)
            if future is None:
                future = self.cache[key] = self.worker.submit(self._render, reset_seed, start_step, episode_actions)
                while len(self.cache) > CLIP_CACHE:
                    self.cache.popitem(last=False)
            self.cache.move_to_end(key)
        try:
            return future.result()
        except BaseException:
            with self.lock:
                if self.cache.get(key) is future:
                    del self.cache[key]
            raise


def create_app(path, labeler, lease_seconds, clock=time.time, env_spec=None, question=None, clip_width=400):
    """The Flask app for one DB. ``clock`` gives Unix time (tests pass a fake one to expire leases).
    ``env_spec``: the DB's env (default: looked up from its id); on any env but the moving dot the
    renderer starts here, so that one that cannot fails before serving."""
    app = Flask(__name__, template_folder=os.path.join(HERE, "templates"),
                static_folder=os.path.join(HERE, "static"))
    env_spec = env_spec or envs.spec(db.read_metadata(path)["env"]["env_id"])
    clips = None if env_spec.tabular else Clips(env_spec, clip_width)
    view = "diagram" if clips is None else "clips"

    def body(*fields):
        """The request's JSON object, checked: comparison_id a positive integer, token as handed out."""
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            abort(400, f"expected a JSON object with {', '.join(fields)}")
        missing = [f for f in fields if f not in data]
        if missing:
            abort(400, f"missing {', '.join(missing)} in the request body")
        cid = data["comparison_id"]
        if type(cid) is not int or cid < 1:  # bool is an int subclass: not a comparison id
            abort(400, f"comparison_id must be a positive integer, not {cid!r}")
        if not isinstance(data["token"], str) or not TOKEN.fullmatch(data["token"]):
            abort(400, "token must be the 32-hex-digit token that /api/next handed out with the pair")
        return data

    def progress():
        p = db.labeling_progress(path, clock())
        oldest = p.pop("oldest_recent")
        minutes = max(clock() - datetime.fromisoformat(oldest).timestamp(), 60.0) / 60 if oldest else 1.0
        return {**p, "labeled": p["human_train"] + p["human_validation"], "labels_per_minute": round(p["recent"] / minutes, 1)}

    def pair(comparison):
        """A pair for the page, with the view to show it in and, for clips, where each one is."""
        if comparison is not None and clips is not None:
            for segment in (comparison["segment1"], comparison["segment2"]):
                replayable = segment["replayable"]
                segment["clip"] = clips.geometry(segment["id"], len(segment["actions"])) if replayable else None
                segment["clip_message"] = None if replayable else f"This segment {NOT_REPLAYABLE}; answer from the other clip, or X: can't tell"
        return {"comparison": comparison, "view": view, "progress": progress()}

    @app.get("/")
    def index():
        meta = db.read_metadata(path)
        config = {"env": meta["env"], "env_id": env_spec.env_id, "view": view, "segment_length": meta["segment_length"],
                  "action_names": md.ACTION_NAMES, "lease_minutes": lease_seconds / 60,
                  "question": question or (DOT_QUESTION if clips is None else CLIP_QUESTION),
                  "fps": clips.fps if clips else None}
        return render_template("label.html", config=config, db=os.path.basename(path), labeler=labeler, dot_question=DOT_QUESTION)

    @app.post("/api/next")
    def next_pair():
        comparison = db.lease_next_comparison(path, uuid.uuid4().hex, lease_seconds, clock())
        result = pair(comparison)
        if comparison is None:
            leased = result["progress"]["leased"]
            result["message"] = (f"All {leased} pending comparisons are on other labelers' screens; unanswered ones come back"
                                 f" within {lease_seconds / 60:g} minutes." if leased else
                                 "No comparison is waiting for a label. Make more with the command below; this page picks them up by itself.")
            result["command"] = more_queries_command(path)
        return jsonify(result)

    @app.post("/api/answer")
    def answer():
        data = body("comparison_id", "token", "answer")
        if data["answer"] not in ANSWERS:
            abort(400, f"answer must be one of {', '.join(ANSWERS)}, not {data['answer']!r}")
        status, mu1 = ANSWERS[data["answer"]]
        stored = db.record_human_label(path, data["comparison_id"], data["token"], status, mu1, labeler)
        return jsonify({"stored": stored, "comparison_id": data["comparison_id"], "answer": data["answer"],
                        "progress": progress()})

    @app.post("/api/undo")
    def undo():
        data = body("comparison_id", "token")
        return jsonify(pair(db.undo_human_label(path, data["comparison_id"], data["token"], lease_seconds, clock())))

    @app.post("/api/release")
    def release():
        data = body("comparison_id", "token")
        return jsonify({"released": db.release_lease(path, data["comparison_id"], data["token"])})

    @app.get("/api/progress")
    def progress_route():
        return jsonify(progress())

    @app.get("/api/clip/<int:segment_id>")
    def clip(segment_id):
        if clips is None:
            abort(404, f"{env_spec.env_id}'s segments are drawn on the page from their positions; it has no clips")
        replay = db.segment_replay(path, segment_id)
        if replay is None:
            abort(409, f"segment {segment_id} {NOT_REPLAYABLE}")
        try:
            png = clips.sheet(*replay)
        except Exception as e:  # noqa: BLE001  an env can fail on a replay in many ways; the page shows the message
            abort(500, f"{env_spec.env_id} could not replay segment {segment_id} ({type(e).__name__}: {e})")
        response = make_response(png)
        response.mimetype = "image/png"
        response.cache_control.no_cache = True  # ids are reused by a DB made anew: ask each time, 304 when unchanged
        response.add_etag()
        return response.make_conditional(request)

    @app.errorhandler(HTTPException)
    def http_error(e):
        if not request.path.startswith("/api/"):
            return e
        return jsonify({"error": e.description}), e.code

    @app.errorhandler(db.UnknownComparison)
    def unknown(e):
        return jsonify({"error": str(e)}), 404

    @app.errorhandler(db.LabelConflict)
    def conflict(e):
        return jsonify({"error": str(e)}), 409

    @app.errorhandler(db.PreferencesDBError)
    def unusable(e):  # e.g. the file was removed while the server runs
        return jsonify({"error": str(e)}), 500

    @app.errorhandler(sqlite3.Error)
    def database_error(e):  # e.g. locked for longer than the 30 s timeout by another writer
        return jsonify({"error": f"database error: {e}; nothing was stored, try again"}), 503

    return app


def main(args):
    # check the DB and its env before serving: missing, foreign or read-only files, another env
    # and a renderer that cannot start fail here, in one line
    conn, meta = db.connect(args.db, write=True)
    conn.close()
    if not os.access(args.db, os.W_OK):
        raise db.PreferencesDBError(f"{args.db} is read-only; labeling writes answers into it")
    env_spec = envs.spec(args.env_id or meta["env"]["env_id"])
    envs.check_params(meta["env"], env_spec, args.db, "leave --env-id out (the DB's env is the default)")
    counts = db.count_by_status(args.db)
    app = create_app(args.db, args.labeler, args.lease_minutes * 60, env_spec=env_spec, question=args.question,
                     clip_width=args.clip_width)
    try:  # our own socket: werkzeug would print two lines and exit on a port in use
        listener = socket.create_server((args.host, args.port), family=socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    except OSError as e:
        raise OSError(f"cannot listen on {args.host}:{args.port} ({e.strerror}); pass another --port or --host") from None
    with listener:
        server = make_server(args.host, args.port, app, threaded=True, request_handler=QuietRequestHandler,
                             fd=listener.fileno())

    # serve
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"{args.db}: {counts['pending']} pending, {counts['labeled']} labeled, {counts['incomparable']} incomparable"
          f" ({env_spec.env_id} segments of length {meta['segment_length']}); answers are stored as labeler {args.labeler!r}")
    print(f"label at http://{host}:{server.port}/  (Ctrl+C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    counts = db.count_by_status(args.db)
    print(f"stopped; {args.db} now holds {counts['pending']} pending, {counts['labeled']} labeled, {counts['incomparable']} incomparable")


if __name__ == "__main__":
    try:
        main(parse_args())
    except (db.PreferencesDBError, envs.EnvError, OSError) as e:
        sys.exit(f"label_preferences.py: error: {e}")
