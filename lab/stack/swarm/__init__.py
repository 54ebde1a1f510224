"""`lab up --engine swarm`: the same topology on a Docker Swarm of simulated hosts (Docker-in-Docker nodes).

nodes.py starts the node containers and forms the swarm; definition.py turns compose's own resolved view of
stack/compose.yaml into a `docker stack deploy` definition with placement; deploy.py puts them together.
"""
