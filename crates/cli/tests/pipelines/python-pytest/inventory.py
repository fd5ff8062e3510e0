def restock(stock, amount):
    if amount < 0:
        raise ValueError('negative restock')
    return stock + amount
