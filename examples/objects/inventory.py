"""A user-defined replicated object: a shop's stock (README "Replicated Python objects")."""

import zraft


class Inventory:
    """Stock per item; a sale that asks for more than there is fails on every replica."""

    def __init__(self) -> None:
        self.stock: dict[str, int] = {}
        self.sold = 0

    @zraft.replicated
    def restock(self, item: str, count: int) -> int:
        if type(count) is not int or count <= 0:
            raise zraft.BadCommand("count must be a positive int")
        self.stock[item] = self.stock.get(item, 0) + count
        return self.stock[item]

    @zraft.replicated
    def sell(self, item: str, count: int = 1) -> int:
        left = self.stock.get(item, 0)
        if type(count) is not int or not 0 < count <= left:
            raise zraft.BadCommand(f"cannot sell {count} {item}: {left} left")
        self.stock[item] = left - count
        self.sold += count
        return left - count

    @zraft.query
    def available(self, item: str) -> int:
        return self.stock.get(item, 0)

    @zraft.query
    def report(self) -> dict:
        return {"stock": dict(sorted(self.stock.items())), "sold": self.sold}
