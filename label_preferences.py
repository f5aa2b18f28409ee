"""Label preferences by hand: a local web page that shows pending comparisons and stores the answers.

    python make_preferences_db.py --db queries.db --oracle none --segment-length 25 --n-segments 400 --n-comparisons 200
    python label_preferences.py --db queries.db          # open the printed URL, answer with the arrow keys
    python train_reward_model.py --db queries.db --out reward_model.pt --label-source human

The human in RLHF (C17 2.2: people watched pairs of short clips and said which was closer to
the goal). Serves a page on 127.0.0.1 that plays the two segments of the next pending comparison
side by side as looping animations of the field, and writes each answer (left better, right
better, equal, or can't tell = incomparable) at once into the same preferences DB, as a 'human'
label with its time and labeler. The split the generator assigned is kept, so held-out rows
stay held out. Several pages, or several servers on one DB file, can label at the same time:
each pending pair is leased to one page for --lease-minutes (db.lease_next_comparison), and
the trainer can read the DB while this writes (WAL).

Routes: GET / (the page), POST /api/next, /api/answer, /api/undo, /api/release, GET /api/progress.
"""

import argparse
import getpass
import os
import re
import shlex
import socket
import sqlite3
import sys
import time
import uuid
from datetime import datetime

from flask import Flask, abort, jsonify, render_template, request
from werkzeug.exceptions import HTTPException
from werkzeug.serving import WSGIRequestHandler, make_server

import cli
import db
import moving_dot as md

ROOT = os.path.dirname(os.path.abspath(__file__))
# what the page's buttons send, and what each answer stores: (status, mu1), mu2 = 1 - mu1
ANSWERS = {"segment1": ("labeled", 1.0), "segment2": ("labeled", 0.0), "equal": ("labeled", 0.5),
           "incomparable": ("incomparable", None)}
TOKEN = re.compile(r"[0-9a-f]{32}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Serve a local web page for labeling the pending comparisons of a preferences DB.")
    p.add_argument("--db", default="preferences.db", help="the preferences DB to label (make_preferences_db.py --oracle none)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=cli.nonnegative_int, default=8000, help="port to listen on (0: any free port)")
    p.add_argument("--labeler", default=None, help="name stored with each answer (default: your user name)")
    p.add_argument("--lease-minutes", type=cli.positive_float, default=5.0,
                   help="a pair shown and not answered for this long goes back to the pool")
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
    return (f"python make_preferences_db.py --db {shlex.quote(path)} --append --oracle none"
            f" --seed {len(meta['generator_runs']) + 1} --segment-length {meta['segment_length']}"
            " --n-segments 200 --n-comparisons 100")


def create_app(path, labeler, lease_seconds, clock=time.time):
    """The Flask app for one DB. ``clock`` gives Unix time (tests pass a fake one to expire leases)."""
    app = Flask(__name__, template_folder=os.path.join(ROOT, "labeling", "templates"),
                static_folder=os.path.join(ROOT, "labeling", "static"))

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
        return {"comparison": comparison, "progress": progress()}

    @app.get("/")
    def index():
        meta = db.read_metadata(path)
        config = {"env": meta["env"], "segment_length": meta["segment_length"], "action_names": md.ACTION_NAMES,
                  "lease_minutes": lease_seconds / 60}
        return render_template("label.html", config=config, db=os.path.basename(path), labeler=labeler)

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
    # check the DB before serving: missing, foreign or read-only files fail here, in one line
    conn, meta = db.connect(args.db, write=True)
    conn.close()
    if not os.access(args.db, os.W_OK):
        raise db.PreferencesDBError(f"{args.db} is read-only; labeling writes answers into it")
    counts = db.count_by_status(args.db)
    app = create_app(args.db, args.labeler, args.lease_minutes * 60)
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
          f" (segments of length {meta['segment_length']}); answers are stored as labeler {args.labeler!r}")
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
    except (db.PreferencesDBError, OSError) as e:
        sys.exit(f"label_preferences.py: error: {e}")
