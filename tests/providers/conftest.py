from tests.profiles.fixtures import World, http, platform, world

__all__ = ["World", "http", "platform", "world"]
