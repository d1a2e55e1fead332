"""Invented venue names and landmarks for the synthetic E2E-style set.

Names are built from small word lists in the shapes British venues have ("The Gilded Fig",
"The Otter and Lantern", "Hartley's", "Willow Yard"); landmarks likewise ("the
Clock Tower", "Ashdown Park", "St Hilda's Church", "Marlow Street Station"). No word of these
lists says anything a slot could mean (no "River", "Centre", "Café", "Curry"), so a name never
reads as a slot value. :func:`name_pools` deals the names out to the splits so that dev and test
use names and landmarks that train never shows: a model has to copy them from the MR.
"""

from __future__ import annotations

import random

ADJECTIVES = """Golden Silver Copper Crimson Scarlet Azure Amber Ivory Velvet Rusty Jolly Merry
Sleepy Hungry Wandering Lazy Lucky Little Crooked Painted Gilded Hidden Secret Quiet Wild Royal
Humble Dancing Laughing Whistling Spotted Striped Northern Misty Frosty Sunny Stormy Salty
Honest Clever Brave Proud Gentle Noble Twisted Hollow Crowned Winged Emerald Sapphire Ruby Jade
Bronze Iron Brass Pewter Oaken Black White Green Blue Grey Red Tawny Dappled Speckled Curious
Drowsy Nimble Rambling Roving Singing Sleeping Silent Bold Wise Weary Jovial Plucky Dusky
Marbled Indigo Saffron Cobalt Lilac Scented Wayward Starlit Amethyst Auburn Blushing Bashful
Brindled Burnished Cheeky Chirpy Cloudy Copperbeech Cunning Dizzy Dreamy Eager Flying Fickle
Foggy Freckled Gallant Giddy Glittering Grinning Grumpy Happy Heavenly Hopping Howling Idle
Jaunty Jumping Kindly Leaping Lonely Lucid Mellow Merciful Mighty Moonlit Muddy Nutty Patient
Peaceful Perky Prancing Prickly Purple Quirky Raggedy Restless Roaring Rosy Rowdy Rustic
Sandy Scruffy Shady Shining Shy Smiling Snowy Sparkling Spinning Stubborn Swift Tangled Tipsy
Tired Trusty Tumbling Velvety Wily Windy Winking Wistful Woolly Yawning Zesty Ancient Artful
Blithe Breezy Brisk Buttery Candid Carefree Cheery Crafty Dainty Dapper Dashing Devoted Dutiful
Earnest Elegant Faithful Feisty Fiery Flighty Fluffy Frisky Genial Gleaming Glowing Graceful
Hardy Hearty Hushed Jubilant Keen Lively Lofty Loyal Majestic Mischievous Modest Nautical
Nifty Nimbus Opal Pensive Placid Playful Polished Quaint Radiant Rugged Serene Sleek Solemn
Sprightly Stately Sturdy Sunlit Thrifty Tranquil Valiant Vivid Whimsical Wintry""".split()

NOUNS = """Fox Heron Swan Otter Badger Hare Owl Raven Stag Pheasant Kettle Lantern Anchor Spoon
Ladle Teapot Barrel Fiddle Compass Key Bell Crown Thistle Acorn Oak Elm Willow Fern Clover Poppy
Juniper Pear Plum Quince Fig Damson Walnut Chestnut Hazel Meadow Harbour Lighthouse Windmill
Granary Orchard Lark Wren Robin Magpie Kingfisher Hedgehog Squirrel Moon Comet Cloud Feather
Thimble Button Candle Clock Mirror Galleon Rudder Plough Saddle Horseshoe Wheel Wagon Shepherd
Falcon Kestrel Sparrow Starling Peacock Pelican Goose Gander Mallard Puffin Beaver Weasel Ferret
Mole Tortoise Dragon Griffin Unicorn Mermaid Wizard Pilgrim Tinker Sailor Drummer Piper Jester
Bishop Baron Duchess Bramble Heather Foxglove Bluebell Primrose Marigold Yarrow Nettle Sorrel
Elder Rowan Hawthorn Alder Birch Cedar Cypress Laurel Myrtle Ivy Sycamore Teasel Tulip Lily
Anvil Bellows Spindle Loom Quill Inkwell Lodestar Sextant Tankard Goblet Chalice Thimbleweed
Hourglass Weathervane Lamplighter Cartwheel Copperpot Gatehouse Hayloft Dovecote Bandstand
Albatross Antelope Armadillo Bison Buffalo Camel Caribou Cormorant Coyote Crane Cricket
Curlew Dormouse Dolphin Dragonfly Eagle Egret Elk Finch Flamingo Gazelle Gecko Goldfinch
Grasshopper Greyhound Grouse Gull Hamster Hornet Ibis Jackdaw Jaguar Jay Kangaroo Koala Lapwing
Lemur Leopard Linnet Lynx Marten Meerkat Mink Moose Moth Newt Nightingale Ocelot Oriole Osprey
Panda Panther Parrot Partridge Peregrine Pigeon Plover Polecat Porcupine Quail Rook Sandpiper
Seal Skylark Snipe Stoat Stork Swallow Tern Thrush Toad Toucan Turtle Vole Walrus Warbler
Whippet Wolf Woodpecker Yak Zebra Abacus Anemone Apricot Aster Banjo Basket Beacon Blackbird
Bobbin Bonnet Bookcase Bugle Buttercup Camellia Canoe Carousel Cauldron Chandelier Cherub
Clarinet Cobweb Cornflower Cowslip Crocus Cuckoo Daffodil Dahlia Daisy Dewdrop Drawbridge
Easel Emberglow Fiddlestick Firefly Flagon Flute Gazebo Geranium Gondola Harp Harpsichord
Hollyhock Honeycomb Hyacinth Jasmine Kite Lavender Lute Magnolia Mandolin Maypole Meadowsweet
Minstrel Mistletoe Nutmeg Oboe Oriel Paintbrush Parasol Periwinkle Pinecone Pinwheel Quiver
Raindrop Ribbon Rosebud Sapling Scarecrow Seashell Snowdrop Spinning-top Sundial Sunflower
Tambourine Telescope Thimbleberry Tinderbox Trumpet Violet Wildflower Windchime Wishbone
Acrobat Admiral Alchemist Archer Astronomer Balloon Bandit Blacksmith Boatman Bookbinder
Buccaneer Butler Captain Cartographer Chimney Cobbler Coachman Cooper Corsair Courier Cutlass
Ferryman Fisherman Gardener Glassblower Gondolier Harlequin Highwayman Huntsman Innkeeper
Juggler Knight Lantern-maker Locksmith Mariner Milkmaid Miller Navigator Ploughman Poacher
Potter Puppeteer Quartermaster Ranger Ropemaker Scribe Seafarer Shipwright Smuggler
Stonemason Storyteller Swordsman Tailor Thatcher Troubadour Voyager Watchman Weaver Woodcutter
Anchorage Archway Bellfounder Bollard Capstan Chimneypot Cloister Coracle Crossbow Dinghy
Doorknocker Figurehead Flintlock Gangplank Hammock Keystone Lattice Mooring Parapet Portcullis
Porthole Rigging Signpost Spyglass Steeple Tiller Turret Waymark""".split()

SURNAMES = """Hartley Marlowe Pennington Ashby Whitlock Fairbairn Holloway Kingsley Merriweather
Thornbury Blackwood Caldwell Ellery Fenwick Garside Hadley Ingram Jessop Kettering Lockwood
Maddox Norbury Oakley Pemberton Quayle Radcliffe Sheldon Tennant Underwood Vickers Wainwright
Yardley Abernethy Bramwell Carrow Dunmore Eastwood Forsyth Gatling Hollis Ibbotson Jarrow
Kilbride Lyndon Mortimer Nettleton Osgood Prescott Rathbone Sotheby Trelawney Upton Voss
Winslow Aldridge Beckett Colley Darnell Everly Fairfax Goodwin Hawley Ivers Jennings Kemble
Lister Mayhew Nesbitt Oldfield Pryce Ramsey Sallow Tolley Vance Whitby Ainsworth Bellamy
Cromwell Dunbar Ellwood Fincher Gresham Huxley Iverson Jolliffe Keating Langley Merrick Noakes
Ogilvy Pickering Rowntree Stanhope Thackeray Verity Wetherby Acheson Addington Alcott Allerton
Ambrose Appleby Arbuthnot Armitage Atherton Babbage Bagshaw Bainbridge Barnaby Bartholomew
Beauchamp Belcher Bickerstaff Blakemore Blenkinsop Bolingbroke Bosworth Braithwaite Brereton
Brocklehurst Bulstrode Burghley Cartwright Catesby Chadwick Chillingworth Claypole Cockburn
Coldstream Copperfield Cottingham Cresswell Crowther Dalrymple Darbyshire Davenport Drinkwater
Dudley Eddington Elphick Entwistle Farnaby Featherstone Fitzroy Flintoff Frobisher Gainsborough
Garrick Gilchrist Goldsworthy Greenhalgh Grimshaw Haldane Hargreaves Hathersage Heathcote
Hetherington Hobhouse Huddleston Ingleby Kenworthy Kirkpatrick Lamplugh Leatherbarrow
Liversedge Longbottom Lovelace Macaulay Mainwaring Merryweather Molesworth Mountjoy Oddie
Ormerod Pankhurst Partington Peabody Pendlebury Pettigrew Postlethwaite Quartermaine
Ravenscroft Rawlinson Ridgeway Rothwell Sandbach Scattergood Shuttleworth Sidebottom
Smallwood Stainforth Standish Stirrup Sturgess Tattersall Thistlewood Threlfall Townsend
Trevelyan Tunnicliffe Twistleton Wadsworth Warburton Whiteley Wigglesworth Winterbottom
Abbott Ackroyd Attenborough Baxendale Blackburn Boothroyd Brackenbury Buckingham Calloway
Carmichael Cavendish Chamberlain Chesterfield Cuthbertson Delacourt Devereux Dinwiddie
Ellingham Fanshawe Farquhar Fotheringham Galbraith Gillingham Greaves Halliwell Harcourt
Hemingway Holroyd Hutchinson Illingworth Jeffries Kingswell Lancaster Latimer Lindqvist
Loxley Marchbank Montague Musgrave Northcott Oglethorpe Pargeter Penhaligon Pilkington
Quennell Ravensdale Rutherford Saltonstall Sandringham Somerville Spofforth Stapleton Sutcliffe
Tremayne Uttley Villiers Wentworth Wilberforce Worthington Wycliffe""".split()

VENUE_WORDS = "House Yard Rooms Corner Lodge Parlour Loft Cellar Den Nook Table Hearth".split()
GIVEN = """Martha Rosie Albert Edith Florence Percy Archie Mabel Walter Hattie Cecil Dora Ernest
Gertie Harold Agatha Bertie Clara Dolly Elsie Frank Gladys Horace Ida Jemima Kit Lottie Maud
Nellie Ottilie Queenie Reggie Stanley Tilly Violet Wilfred Alfie Beatrix Cornelius Delphine
Enid Ferdinand Greta Hector Isadora Jasper Leopold Matilda Nora Oswin Prudence Rupert Sybil
Tobias Ursula Vera Wendell Zelda""".split()
SAINTS = """Hilda Agnes Aidan Brigid Cuthbert Dunstan Edmund Giles Helen Jude Lucy Michael
Oswald Swithun Wilfrid Bede Alban Chad Clement Cyril Eustace Felix Anselm Barnabas Botolph
Columba Crispin Dorothy Etheldreda Frideswide Gregory Hubert Ignatius Kenelm Leonard Margaret
Nicholas Olave Pancras Petroc Sebastian Silas Stephen Ursula Vedast Winifred""".split()
BUILDINGS = """Tower Bridge Museum Gallery Library Theatre Cathedral Abbey Market Station Gate
Square Fountain Monument Exchange Hall Chapel Observatory Arcade Pier Playhouse Infirmary
Almshouses Conservatory Aqueduct Obelisk Mint Guildhall Lido Bandstand Boathouse Chapterhouse
Clocktower Courthouse Customs-house Gatehouse Granary Lighthouse Mill Orangery Pavilion
Planetarium Priory Rotunda Tollhouse Viaduct Watermill Windmill Belfry Barracks""".split()
BUILDING_OWNERS = """Clock Corn Wool Salt Guild Crown Victoria Albert Jubilee Coronation
Bishop's Merchant Market Weavers' Drapers' Mariners' Cloth Tanners' Glassblowers' Ropemakers'
Coopers' Old Grand Royal Memorial Regent Empire Civic Orchard Meadow Hilltop Admiralty
Apothecaries' Bakers' Brewers' Chandlers' Clockmakers' Cordwainers' Cutlers' Dyers' Fishmongers'
Goldsmiths' Hatters' Ironmongers' Masons' Saddlers' Shipwrights' Vintners' Wheelwrights'
Millennium Britannia Waterloo Trafalgar Wellington Nelson Elizabeth Edwardian Georgian""".split()
PLACES = """Ashdown Bellhaven Coldharbour Dunsford Elmstead Foxley Greyfriars Holmwood Ivybridge
Kingsway Larkhill Millbrook Newbold Oakhurst Pendle Queensgate Rookwood Stonegate Thornhill
Upperton Westcombe Yelverton Ambleside Brackley Chalkwell Dovedale Fernhill Gorsey Hazelmere
Kelmscott Lindley Marsden Northwick Orwell Priorsfield Redhill Saltmarsh Tenterden Woodvale
Abbotsford Aldermoor Applegarth Ashcombe Barrowby Beechwood Birchfield Blackheath Bramblewood
Broadmere Burnside Castlegate Charnwood Clayhill Cloverdale Coppergate Crowhurst Dalesford
Eastbury Edgecombe Elderfield Fairlight Farleigh Foxhollow Glenfield Goldthorpe Greenacre
Harrowden Hartfield Heathfield Highgrove Hollybank Kestrelmoor Kingsmead Lambourne Larchwood
Linthorpe Longmeadow Maplehurst Marshfield Merebrook Nettlecombe Oakleigh Pebblebrook
Primrose-hill Quarrydale Ravensworth Rosedale Sedgemoor Shepherdswell Silverdale Southwold
Springfield Stillwater Swanbourne Thistledown Westerleigh Whitethorn Wildmoor Winterbourne""".split()  # noqa: E501
PLACE_KINDS = (
    "Park Common Green Square Gardens Meadows Heath Crescent Fields Terrace Circus".split()
)


def name_shapes() -> list[tuple[float, list[str]]]:
    """Venue names by shape, each with the share of names it gets: (share, sorted names)."""
    return [
        (0.35, sorted(f"The {a} {n}" for a in ADJECTIVES for n in NOUNS)),
        (0.2, sorted({f"The {n} and {m}" for n in NOUNS[::2] for m in NOUNS[1::3] if n != m})),
        (0.08, sorted(f"{s}'s" for s in SURNAMES)),
        (0.2, sorted(f"{n} {w}" for n in NOUNS for w in VENUE_WORDS)),
        (0.17, sorted(f"{g}'s {w}" for g in GIVEN for w in VENUE_WORDS)),
    ]


def landmark_shapes() -> list[tuple[float, list[str]]]:
    """Landmarks by shape, with their shares; those with "the" start lower-case."""
    return [
        (0.35, sorted(f"the {o} {b}" for o in BUILDING_OWNERS for b in BUILDINGS)),
        (0.3, sorted(f"{p} {k}" for p in PLACES for k in PLACE_KINDS)),
        (0.05, sorted(f"St {s}'s Church" for s in SAINTS)),
        (0.1, sorted(f"{p} Station" for p in PLACES)),
        (0.2, sorted(f"{s} Street" for s in SURNAMES)),
    ]


def all_names() -> list[str]:
    """Every venue name the word lists make, sorted (tens of thousands)."""
    return sorted({n for _, names in name_shapes() for n in names})


def all_landmarks() -> list[str]:
    """Every landmark the word lists make, sorted."""
    return sorted({m for _, marks in landmark_shapes() for m in marks})


def _deal(
    shapes: list[tuple[float, list[str]]], counts: dict[str, int], rng: random.Random
) -> dict[str, list[str]]:
    """Draw each shape's share of the names, shuffle them and deal them out to the splits."""
    total = sum(counts.values())
    items: list[str] = []
    for share, names in shapes:
        items += rng.sample(names, min(len(names), round(share * total) + 1))
    if len(items) < total:  # small shapes ran out: fill up from the others
        chosen = set(items)
        rest = sorted({n for _, names in shapes for n in names} - chosen)
        items += rng.sample(rest, min(len(rest), total - len(items)))
    if len(items) < total:
        raise ValueError(
            f"Asked for {total} distinct names but the word lists make only "
            f"{len(items)}; ask for fewer or add words to lorakit/data/e2e_names.py."
        )
    rng.shuffle(items)
    pools, start = {}, 0
    for split, n in counts.items():
        pools[split] = sorted(items[start : start + n])
        start += n
    return pools


def name_pools(
    counts: dict[str, int], landmark_counts: dict[str, int], rng: random.Random
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Deal disjoint pools of names and landmarks to the splits.

    Parameters
    ----------
    counts : how many venue names each split gets, e.g. ``{"train": 3500, "dev": 250, ...}``.
    landmark_counts : how many landmarks each split gets.
    rng : the generator's random source (the pools depend on the seed).

    Returns
    -------
    (names, landmarks) : ``{split: sorted list}`` each; no string is in two splits, and no dev
        or test string occurs inside a train one ("Fox and Hare" in "The Fox and Hare").
    """
    names = _deal(name_shapes(), counts, rng)
    marks = _deal(landmark_shapes(), landmark_counts, rng)
    train = [t.lower() for t in names.get("train", []) + marks.get("train", [])]
    for pools in (names, marks):
        for split in pools:
            if split != "train":
                pools[split] = [v for v in pools[split] if not any(v.lower() in t for t in train)]
    return names, marks
