"""Traffic models shared by ``coderig bench`` (which sends them) and ``coderig plan`` (which
simulates them): pure, seeded functions of their parameters, with no network and no asyncio.

* :mod:`coderig.traffic.arrivals` — send times at a constant rate or as a Poisson stream;
* :mod:`coderig.traffic.typing_team` — developers typing in editors: keystrokes, pauses, jumps,
  and the completion requests (with their cancel times) that an editor sends for them.
"""
