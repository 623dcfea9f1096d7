"""What `/readyz` checks besides its own database and Temporal: that some worker is polling the task
queue (Temporal's own record of its pollers, so nothing extra to write), and that the relay keeps up
(no stored inbound message left undelivered for longer than a threshold)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, func
from sqlmodel import Session, col, select
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from store.models import InboundMessage, utcnow


async def polling_workers(client: Client, task_queue: str, stale_after: timedelta) -> int:
    """How many workers polled the task queue's workflow tasks within `stale_after`. An idle worker
    re-polls every minute or so (long polls), so `stale_after` must be longer than that."""
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    cutoff = datetime.now(UTC) - stale_after
    return len({p.identity for p in response.pollers if p.last_access_time.ToDatetime(tzinfo=UTC) >= cutoff})


def relay_backlog(engine: Engine, older_than: timedelta) -> int:
    """Stored inbound messages, correlated to a pathway, still undelivered after `older_than`."""
    with Session(engine) as session:
        return session.exec(
            select(func.count())
            .select_from(InboundMessage)
            .where(
                InboundMessage.delivery_status == "received",
                col(InboundMessage.flow_id).is_not(None),
                InboundMessage.received_at <= utcnow() - older_than,
            )
        ).one()
