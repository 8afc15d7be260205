"""Short neutral passages (no cultural or moral stance) for a before/after perplexity check of
general language ability. Written for this kit; factual, encyclopaedic register."""

NEUTRAL_PASSAGES = (
    "Water boils at 100 degrees Celsius at sea level. At higher altitudes the air pressure is lower, "
    "so water boils at a lower temperature and food takes longer to cook.",
    "A prime number is a whole number greater than one whose only divisors are one and itself. "
    "The first few primes are 2, 3, 5, 7, 11 and 13.",
    "Plants make their food by photosynthesis. Using sunlight, they turn carbon dioxide and water "
    "into sugar and release oxygen into the air.",
    "The Moon orbits the Earth about once every 27 days. The same side of the Moon always faces the "
    "Earth because its rotation and its orbit take the same time.",
    "A library lends books, films and music to its members. Many libraries also offer reading rooms, "
    "internet access and help with finding information.",
    "Bicycles convert the rider's pedalling into motion through a chain that connects the pedals to "
    "the rear wheel. Gears change how far the bicycle travels for each turn of the pedals.",
    "Rain forms when water vapour in clouds condenses into droplets that grow heavy enough to fall. "
    "In cold air the droplets may freeze and fall as snow instead.",
    "A spreadsheet arranges data in rows and columns of cells. Formulas in one cell can compute "
    "values from the contents of other cells and update when those change.",
)
