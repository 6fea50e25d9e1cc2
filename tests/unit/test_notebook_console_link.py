"""A notebook's page links to the console and logs of its running replicas, as a training
task's page does (issue 16); another renter gets 404 for them."""

from portal.models import Replica, Task
from tests.conftest import PASSWORD
from tests.support import login
from tests.unit import test_notebooks as notebooks_test

world = notebooks_test.world  # the fixture: pools, nodes, specs and renters rene and rita


def test_a_running_notebook_links_to_its_console_and_logs(app, client, world):
    notebook_id = notebooks_test.make_in(app)
    with app.app_context():
        run = Task.get(Task.notebook == notebook_id)
        replica = Replica.get(Replica.task == run.id)
        Replica.update(state="running", container="hg-test-nb").where(
            Replica.id == replica.id).execute()
    console = f"/renter/tasks/{run.id}/replicas/{replica.id}/console"
    logs = f"/renter/tasks/{run.id}/replicas/{replica.id}/logs"
    other = app.test_client()
    login(other, "renter", "rita", PASSWORD)
    assert other.get(console).status_code == 404 and other.get(logs).status_code == 404
    login(client, "renter", "rene", PASSWORD)
    page = client.get(f"/renter/notebooks/{notebook_id}").get_data(as_text=True)
    assert f'href="{console}" hx-boost="false" data-link="console"' in page
    assert f'href="{logs}" hx-boost="false" data-link="logs"' in page
    answer = client.get(console)
    assert answer.status_code == 200
    assert f'href="/renter/notebooks/{notebook_id}"' in answer.get_data(as_text=True)
