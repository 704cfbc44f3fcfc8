"""Online human help (线上人工帮办): routing to a unit, the wait, agents, ratings of their service.

- :mod:`.store`   — service segments in SQL (the truth);
- :mod:`.service` — the citizen's side: routing, queueing, 留言, assignment, the sweep;
- :mod:`.desk`    — the agent's side: presence, replies, close, transfer, 派单, 留言;
- :mod:`.rating`  — 好差评 of a human service, on every channel;
- :mod:`.steering` — which citizen lines only steer (转人工, a menu tap …), for 派单 and 纳入知识库.
"""

from .desk import AgentDesk, BannedPhrase
from .service import HandoffService
from .store import Handoff, HandoffStore

__all__ = ["AgentDesk", "BannedPhrase", "Handoff", "HandoffService", "HandoffStore"]
