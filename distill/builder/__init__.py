"""The build loop: simulated customers, the student's rollouts, the teacher's strategies, the outputs.

`loop.run_build` drives the stages; `rundir` sets a run up; `state` is what the journal replays;
`outputs` writes the library, the report and the pack.
"""
