"""Locust's side of `lab bench loadgen`: the same /lab-ping at a fixed rate (one request per user per second)."""

from locust import FastHttpUser, constant_throughput, task


class Ping(FastHttpUser):
    wait_time = constant_throughput(1)

    @task
    def ping(self) -> None:
        self.client.get("/lab-ping")
