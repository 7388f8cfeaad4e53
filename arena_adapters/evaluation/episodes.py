"""Exact episode accounting for vectorized environments.

With ``N`` envs and a budget of ``M`` episodes, the first ``M`` episodes to *start* are counted,
in env-id order at each step: the ``min(N, M)`` episodes started by ``reset()``, then one per
finished env while the budget lasts. An env that finishes when all ``M`` episodes have started is
masked out: it keeps stepping (a vectorized env cannot pause) but its further episodes are not
counted. The evaluation is over when every counted episode has finished, so exactly ``M`` episodes
are reported and short episodes are not favoured over long ones (counting the first ``M`` to
*finish* would be).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Episode:
    """One finished, counted episode.

    Attributes:
        index: order in which it started (0-based).
        env_id: the env that ran it.
        length: its number of steps.
        success: whether it succeeded.
        end_step: the runner step at which it finished (1-based).
    """

    index: int
    env_id: int
    length: int
    success: bool
    end_step: int


class EpisodeLedger:
    """Counts exactly ``num_episodes`` episodes over ``num_envs`` envs (see the module docstring).

    Call :meth:`record_step` after every ``env.step`` with the host arrays of finished envs.
    """

    def __init__(self, num_envs: int, num_episodes: int) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if num_episodes < 1:
            raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
        self.num_envs = num_envs
        self.num_episodes = num_episodes
        first = min(num_envs, num_episodes)
        self.active = np.zeros(num_envs, dtype=bool)
        self.active[:first] = True
        self.episode_index = np.full(num_envs, -1, dtype=np.int64)
        self.episode_index[:first] = np.arange(first)
        self.started = first
        self.steps_in_episode = np.zeros(num_envs, dtype=np.int64)
        self.step = 0
        self.episodes: list[Episode] = []

    @property
    def finished(self) -> int:
        """Counted episodes that have finished."""
        return len(self.episodes)

    @property
    def successes(self) -> int:
        """Counted episodes that succeeded."""
        return sum(episode.success for episode in self.episodes)

    @property
    def done(self) -> bool:
        """True when all ``num_episodes`` episodes have finished."""
        return self.finished >= self.num_episodes

    @property
    def in_flight(self) -> int:
        """Counted episodes that are running now."""
        return int(self.active.sum())

    def record_step(self, finished: NDArray[np.bool_], success: NDArray[np.bool_]) -> NDArray[np.int64]:
        """Account one env step.

        Args:
            finished: ``(num_envs,)`` bool, envs whose episode ended in this step.
            success: ``(num_envs,)`` bool, which of those succeeded.

        Returns:
            The ids of the finished envs that started a counted episode (ascending).
        """
        self.step += 1
        self.steps_in_episode += 1
        ended: NDArray[np.int64] = np.flatnonzero(finished)
        counted = ended[self.active[ended]]
        for env_id in counted.tolist():
            self.episodes.append(
                Episode(
                    index=int(self.episode_index[env_id]),
                    env_id=env_id,
                    length=int(self.steps_in_episode[env_id]),
                    success=bool(success[env_id]),
                    end_step=self.step,
                )
            )
        self.steps_in_episode[ended] = 0
        budget = max(self.num_episodes - self.started, 0)
        restarting: NDArray[np.int64] = counted[:budget]
        stopping = counted[budget:]
        self.episode_index[restarting] = np.arange(self.started, self.started + len(restarting))
        self.started += len(restarting)
        self.active[stopping] = False
        self.episode_index[stopping] = -1
        return restarting
