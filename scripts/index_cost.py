"""Instructions per event of the member index and the memberships records (docs/architecture.md, "The member index").

Run under valgrind --tool=callgrind; "off" replaces the index writes with nothing and skips the records.
usage: index_cost.py EVENTS.jsonl N on|off"""
import sys, orjson
from microseg.engine.state import MemoryStore
from microseg.engine.worker import tasks as tasks_mod
from microseg.engine.worker.delivery import membership_records
from microseg.engine.startup import load_ruleset
from microseg.engine.settings import Settings
from microseg.segments.pipeline import Record
from microseg.segments.step import Core
from aiokafka.partitioner import DefaultPartitioner

path, n, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if mode == "off":
    tasks_mod.index_writes = lambda out, partition: {}
lines = [l.rstrip(b"\n") for _, l in zip(range(n), open(path, "rb"))]
part = DefaultPartitioner()
store = MemoryStore()
t = tasks_mod.PartitionTasks(Core(load_ruleset(Settings()), None), store, input_topic="in")
for p in range(4):
    t.index_partition(p, [])
offsets = {}
records = []
for raw in lines:
    c = orjson.loads(raw)["customer_id"]
    p = part(c.encode(), [0, 1, 2, 3], [])
    o = offsets.get(p, 0); offsets[p] = o + 1
    records.append(Record(p, o, c.encode(), raw))
sent = 0
for i in range(0, len(records), 2000):
    out = t.process(records[i:i + 2000], 2e9)
    if mode == "on":
        for key, value in membership_records(out.changes):
            sent += 1
            if value is not None:
                orjson.dumps(value)
print(mode, len(records), "memberships records", sent, file=sys.stderr)
