"""GitLab's REST API as python-gitlab sees it, against the fake GitLab.

python-gitlab is an independent, well-kept GitLab client: if the fake answered off GitLab's
shape (a field missing or of the wrong type, a pagination header or `Link` wrong, an error off
GitLab's status), this script fails. tests/gitlab_contract.rs starts the fake, prepares the
world described by the JSON facts it passes, runs this with the python of the venv
scripts/test.sh installs python-gitlab into, then checks the fake recorded no violation.

    python3 gitlab_contract.py URL TOKEN FACTS_JSON
"""

import datetime
import json
import re
import sys
import warnings

# python-gitlab warns when a `Link` points at another base URL, and when a listing would be cut
# short: either is a failure here.
warnings.simplefilter("error")

import gitlab  # noqa: E402
import gitlab.exceptions  # noqa: E402

URL, TOKEN, FACTS = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
SHA = re.compile(r"^[0-9a-f]{40}$")
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def raises(kind, code, fn, what):
    try:
        fn()
    except kind as e:
        check(e.response_code == code, f"{what}: status {e.response_code}, want {code} ({e.error_message!r})")
        return e
    raise AssertionError(f"{what}: no {kind.__name__}")


def user(u, username):
    check(isinstance(u, dict), f"a user object, got {u!r}")
    check(u["username"] == username, f"user {u['username']!r}, want {username!r}")
    check(isinstance(u["id"], int) and isinstance(u["name"], str), f"user fields: {u!r}")
    check(u["web_url"] == f"{URL}/{username}", f"user web_url {u['web_url']!r}")
    check(u["state"] == "active", f"user state {u!r}")


def mr_fields(m):
    # Read the answer's dict: python-gitlab copies list attributes it hands out into the next
    # save(), and GitLab has no `assignees` parameter.
    a = m.attributes
    check(isinstance(a["id"], int) and isinstance(a["iid"], int) and a["id"] != a["iid"], f"id/iid: {a['id']}, {a['iid']}")
    check(a["project_id"] == project.id, f"project_id {a['project_id']}")
    check(a["state"] in ("opened", "closed", "merged", "locked"), f"state {a['state']!r}")
    check(isinstance(a["labels"], list) and all(isinstance(x, str) for x in a["labels"]), f"labels {a['labels']!r}")
    check(a["labels"] == sorted(a["labels"]), f"GitLab sorts labels: {a['labels']!r}")
    check(isinstance(a["draft"], bool) and a["work_in_progress"] == a["draft"], f"draft {a['draft']!r}")
    check(isinstance(a["assignees"], list) and isinstance(a["reviewers"], list), "assignees/reviewers are lists")
    check(SHA.match(a["sha"] or ""), f"sha {a['sha']!r}")
    check(STAMP.match(a["created_at"]) and STAMP.match(a["updated_at"]), f"timestamps {a['created_at']!r} {a['updated_at']!r}")
    check(isinstance(a["merge_when_pipeline_succeeds"], bool), "merge_when_pipeline_succeeds is a bool")
    check(isinstance(a["user_notes_count"], int), "user_notes_count is an int")
    check(a["web_url"] == f"{URL}/{FACTS['project']}/-/merge_requests/{a['iid']}", f"web_url {a['web_url']!r}")
    check(a["references"]["full"] == f"{FACTS['project']}!{a['iid']}", f"references {a['references']!r}")
    check(a["merge_commit_sha"] is None or SHA.match(a["merge_commit_sha"]), "merge_commit_sha")
    check(a["detailed_merge_status"] in ("mergeable", "draft_status", "not_open", "checking"), a["detailed_merge_status"])
    user(a["author"], a["author"]["username"])


gl = gitlab.Gitlab(URL, private_token=TOKEN)

# ---- projects: by URL-encoded full path and by id ----
project = gl.projects.get(FACTS["project"])
check(project.path_with_namespace == FACTS["project"], project.path_with_namespace)
check(project.default_branch == "main", project.default_branch)
check(project.namespace["full_path"] == FACTS["project"].rsplit("/", 1)[0], project.namespace)
check(project.http_url_to_repo == f"{URL}/{FACTS['project']}.git", project.http_url_to_repo)
check(gl.projects.get(project.id).path_with_namespace == FACTS["project"], "by id")
raises(gitlab.exceptions.GitlabGetError, 404, lambda: gl.projects.get("platform/nowhere"), "an unknown project")

# ---- merge requests: pagination both ways ----
people_mrs = FACTS["people_mrs"]
listed = project.mergerequests.list(state="opened", per_page=10, get_all=True)
check(len(listed) == people_mrs, f"{len(listed)} merge requests over the pages, want {people_mrs}")
check([m.iid for m in listed] == sorted((m.iid for m in listed), reverse=True), "newest first by default")
for m in listed:
    mr_fields(m)
    check(m.author["username"] == "alice" and m.state == "opened", f"!{m.iid}")
pages = project.mergerequests.list(state="opened", per_page=10, iterator=True)
check((pages.total, pages.total_pages, pages.per_page, pages.current_page) == (people_mrs, 3, 10, 1), "x-total, x-total-pages, x-per-page, x-page")
check(pages.next_page == 2 and pages.prev_page is None, "x-next-page / x-prev-page on page 1")
check(len(list(pages)) == people_mrs, "the iterator follows Link rel=next to the end")
page3 = project.mergerequests.list(state="opened", per_page=10, page=3)
check(len(page3) == people_mrs - 20, f"page 3 holds {len(page3)}")
one = project.mergerequests.list(source_branch="feature-5", get_all=True)
check([m.iid for m in one] == [5], f"source_branch filter: {[m.iid for m in one]}")
asc = project.mergerequests.list(order_by="updated_at", sort="asc", per_page=100, get_all=True)
check([m.updated_at for m in asc] == sorted(m.updated_at for m in asc), "order_by=updated_at&sort=asc")

# ---- users and members ----
alice = gl.users.list(username="alice", get_all=True)
check(len(alice) == 1 and alice[0].username == "alice" and isinstance(alice[0].id, int), f"users?username=alice: {alice}")
alice = alice[0]
bob = gl.users.list(username="BOB", get_all=True)
check([u.username for u in bob] == ["bob"], "usernames match in any case")
bob = bob[0]
check(gl.users.list(username="nobody", get_all=True) == [], "no such user: an empty list")
m = project.members_all.get(alice.id)
check((m.username, m.access_level, m.id) == ("alice", 30, alice.id), f"alice is a Developer of the group: {m.attributes}")
m = project.members_all.get(bob.id)
check(m.access_level == 20 and m.membership_state == "active", f"bob is a Reporter: {m.attributes}")
raises(gitlab.exceptions.GitlabGetError, 404, lambda: project.members_all.get(FACTS["stranger_id"]), "a non-member")

# ---- create, update, close, reopen ----
mr = project.mergerequests.create(
    {
        "source_branch": FACTS["bot_branch"],
        "target_branch": "main",
        "title": "Draft: update api to 1.1.0",
        "description": "Deploy review",
        "labels": "env/dev,deps",
    }
)
mr_fields(mr)
check(mr.iid == people_mrs + 1 and mr.state == "opened", f"!{mr.iid} {mr.state}")
check(mr.draft is True and mr.attributes["labels"] == ["deps", "env/dev"], f"{mr.draft} {mr.attributes['labels']}")
check(mr.sha == FACTS["bot_sha"] and mr.source_branch == FACTS["bot_branch"], mr.sha)
check(mr.author["username"] == "image-bot" and mr.description == "Deploy review", mr.author)
check(mr.diff_refs["head_sha"] == FACTS["bot_sha"] and SHA.match(mr.diff_refs["base_sha"]), mr.diff_refs)
e = raises(
    gitlab.exceptions.GitlabCreateError,
    409,
    lambda: project.mergerequests.create({"source_branch": FACTS["bot_branch"], "target_branch": "main", "title": "again"}),
    "a second open merge request for the branch",
)
check(f"!{mr.iid}" in str(e.error_message), e.error_message)

mr.title = "update api to 1.2.0"
mr.description = "Deploy review, again"
mr.assignee_ids = [alice.id]
mr.reviewer_ids = [alice.id, FACTS["stranger_id"]]
mr.save()
fresh = project.mergerequests.get(mr.iid)
mr_fields(fresh)
check((fresh.title, fresh.draft, fresh.description) == ("update api to 1.2.0", False, "Deploy review, again"), fresh.title)
f = fresh.attributes
check([a["username"] for a in f["assignees"]] == ["alice"] and f["assignee"]["username"] == "alice", f["assignees"])
check([r["username"] for r in f["reviewers"]] == ["alice"], f"non-members are dropped: {f['reviewers']}")
mr.state_event = "close"
mr.save()
check(mr.state == "closed" and STAMP.match(mr.closed_at) and mr.closed_by["username"] == "image-bot", mr.state)
mr.state_event = "reopen"
mr.save()
check(mr.state == "opened" and mr.closed_at is None, mr.state)

# ---- notes ----
note = mr.notes.create({"body": "Not this week.\n\n/pin"})
check(note.system is False and note.body == "Not this week.\n\n/pin", note.attributes)
check((note.noteable_type, note.noteable_iid, note.noteable_id) == ("MergeRequest", mr.iid, mr.id), note.attributes)
check(note.author["username"] == "image-bot" and STAMP.match(note.created_at) and note.type is None, note.attributes)
notes = mr.notes.list(get_all=True)
check(notes[0].id == note.id, "newest first by default")
check([n.id for n in notes] == sorted((n.id for n in notes), reverse=True), "sort=desc by created_at")
system = [n for n in notes if n.system]
check(system and all(isinstance(n.body, str) for n in system), "GitLab's own notes are there, system: true")
check(any(n.body == "closed" for n in system) and any(n.body == "reopened" for n in system), [n.body for n in system])
asc = mr.notes.list(get_all=True, sort="asc", order_by="created_at", per_page=2)
check([n.id for n in asc] == sorted(n.id for n in notes), "sort=asc over pages of 2")
check(mr.notes.get(note.id).body == note.body, "one note")

# ---- award emoji on a note ----
award = note.awardemojis.create({"name": "thumbsup"})
check((award.name, award.awardable_id, award.awardable_type) == ("thumbsup", note.id, "Note"), award.attributes)
user(award.user, "image-bot")
check([a.name for a in note.awardemojis.list(get_all=True)] == ["thumbsup"], "listed")
raises(gitlab.exceptions.GitlabCreateError, 404, lambda: note.awardemojis.create({"name": "thumbsup"}), "the same award twice")
check(mr.notes.list(get_all=True)[0].id == note.id, "an award is no note")

# ---- events ----
commented = project.events.list(action="commented", get_all=True)
check(all(e.action_name == "commented on" and e.target_type in ("Note", "DiscussionNote") for e in commented), [e.action_name for e in commented])
bodies = [e.note["body"] for e in commented]
check(note.body in bodies and FACTS["alice_note"] in bodies and FACTS["alice_thread"] in bodies, bodies)
check(all(not e.note["system"] for e in commented), "no event for a system note")
plain = project.events.list(action="commented", target_type="note", get_all=True)
check(FACTS["alice_thread"] not in [e.note["body"] for e in plain], "target_type=note leaves threads (DiscussionNote) out")
mine = [e for e in commented if e.note["id"] == note.id][0]
check((mine.target_id, mine.author_username, mine.note["noteable_iid"]) == (note.id, "image-bot", mr.iid), mine.attributes)
# `after` and `before` are days: `after` keeps what was created from the next day on.
days = sorted({datetime.date.fromisoformat(e.created_at[:10]) for e in commented})
day_before = (days[0] - datetime.timedelta(days=1)).isoformat()
check(len(project.events.list(action="commented", after=day_before, get_all=True)) == len(commented), "after=<the day before>")
check(project.events.list(action="commented", after=days[-1].isoformat(), get_all=True) == [], "after=<the same day> keeps nothing")
day_after = (days[-1] + datetime.timedelta(days=1)).isoformat()
check(len(project.events.list(action="commented", before=day_after, get_all=True)) == len(commented), "before=<the day after>")
opened = project.events.list(action="created", target_type="merge_request", get_all=True)
check(any(e.target_iid == mr.iid and e.action_name == "opened" for e in opened), "the bot's merge request was opened")

# ---- auto-merge, then branches ----
mr.merge(auto_merge=True, merge_when_pipeline_succeeds=True, squash=True)
check(mr.merge_when_pipeline_succeeds is True and mr.state == "opened" and mr.squash is True, mr.attributes)
project.branches.delete(FACTS["old_branch"])
raises(gitlab.exceptions.GitlabDeleteError, 404, lambda: project.branches.delete(FACTS["old_branch"]), "a deleted branch")
raises(gitlab.exceptions.GitlabDeleteError, 405, lambda: project.branches.delete("main"), "the default branch")

print("python-gitlab", gitlab.__version__, "against the fake GitLab: ok")
