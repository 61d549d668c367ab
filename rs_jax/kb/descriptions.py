"""Hand-written descriptions of every KB concept as seen from above.

Keyed by canonical name (unique across levels in the shipped KB); a key of the
form "level/slug" (an entry id) takes precedence where a name is ambiguous.
Each text says what the thing looks like in overhead imagery: shape, texture,
colour, context and typical size. Written for rs-jax; not copied from anywhere.
"""

from __future__ import annotations

_SCENE: dict[str, str] = {
    "airport": (
        "A large flat facility dominated by long straight paved runways and taxiways, with "
        "terminal buildings, aprons where airplanes park and grass strips between the "
        "pavements. Usually several kilometres across at the edge of a city."
    ),
    "amusement park": (
        "A compact, colourful area of rides, looping roller-coaster tracks, pavilions and "
        "winding footpaths, often with a ferris wheel's circle and large car parks at the "
        "entrance."
    ),
    "aquaculture": (
        "Grids of rectangular ponds or floating cages in shallow water or along coasts, "
        "separated by narrow earthen dikes; pond water varies from green to brown."
    ),
    "archaeological site": (
        "Excavated ground with exposed stone foundations, wall outlines and trenches forming "
        "geometric patterns in bare earth, often fenced and surrounded by fields or desert."
    ),
    "avenue": (
        "A straight urban road lined on both sides by rows of tree crowns, often with a "
        "planted median; cars and lane markings show between the trees."
    ),
    "beach resort": (
        "A strip of hotels with swimming pools, palm-lined gardens and parasol rows facing a "
        "sandy beach and the sea."
    ),
    "blue structured factory building": (
        "An industrial block of large factory halls with blue metal roofs arranged in regular "
        "rows, with paved yards and access roads between them."
    ),
    "border checkpoint": (
        "A road crossing a national border that widens into many parallel lanes under canopy "
        "roofs, with inspection booths, queues of trucks and fenced parking areas."
    ),
    "botanical garden": (
        "A park with many small planted beds, curving paths, ponds and glass greenhouses, "
        "showing a patchwork of differently coloured vegetation."
    ),
    "bus station": (
        "A paved terminal with rows of angled bus bays under long canopy roofs, buses parked "
        "side by side and a station building beside it."
    ),
    "canyon": (
        "A deep, narrow, winding valley cut into rock, with steep shadowed walls, layered "
        "reddish or grey strata and often a river at the bottom."
    ),
    "car dealership": (
        "A showroom building next to a lot packed with rows of cars parked very regularly, "
        "mostly of similar colours and sizes, usually beside a main road."
    ),
    "cemetery": (
        "Ground covered by dense regular rows of small grave plots or headstones separated by "
        "narrow paths, often with scattered trees and a surrounding wall; in some regions "
        "graves form clustered mounds on hillsides."
    ),
    "christmas tree farm": (
        "Fields planted with small conifers in very regular rows, trees of uniform size "
        "spaced evenly with grass or bare soil between them."
    ),
    "circular farmland": (
        "Fields shaped as large green or brown discs, typically 400-800 m across, produced by "
        "centre-pivot irrigation and often packed in a square grid."
    ),
    "city building": (
        "Dense urban blocks of mid- to high-rise buildings with flat roofs, casting long "
        "shadows, separated by streets with little vegetation."
    ),
    "city center": (
        "The dense core of a city: tall buildings with varied roofs, long shadows, a tight "
        "street grid, squares and very little open ground."
    ),
    "coastal mansion": (
        "Large detached houses on big lots along a coastline, with swimming pools, lawns, "
        "private docks or beach access."
    ),
    "coastline": (
        "The boundary between land and sea, a sharp line separating dark or turquoise water "
        "from beach, rock, vegetation or built-up land, often with a surf band."
    ),
    "commercial area": (
        "An area of shops, offices and malls with large flat roofs, wide roads and extensive "
        "parking lots, denser and more varied than industrial zones."
    ),
    "construction site": (
        "Disturbed bare ground with foundations, half-built structures, stockpiles of "
        "material, tower cranes, excavators and temporary roads."
    ),
    "container terminal": (
        "A port quay lined with large gantry cranes over ships and a wide yard filled with "
        "colourful rectangular shipping containers stacked in long blocks."
    ),
    "debris or rubble": (
        "Areas of collapsed buildings or demolition: irregular heaps of grey and brown "
        "fragments with no clear roof outlines, among intact streets."
    ),
    "dense residential": (
        "Tightly packed houses or apartment blocks with small roofs nearly touching, narrow "
        "streets, few trees and almost no open ground."
    ),
    "dense tall building": (
        "Clusters of high-rise towers close together, recognisable by long shadows, "
        "elevated perspective and small footprints relative to height."
    ),
    "desert": (
        "Vast dry land of sand, gravel or rock with little or no vegetation, often rippled "
        "by dunes in yellow, orange or pale grey tones."
    ),
    "dry farmland": (
        "Rain-fed fields without irrigation, often brown or yellow for much of the year, in "
        "irregular or terraced plots on plains and hills."
    ),
    "educational institution": (
        "A campus of several large buildings around courtyards, with sports fields, running "
        "tracks and parking lots."
    ),
    "electric substation": (
        "A fenced gravel yard with rows of transformers, switchgear frames and busbars in a "
        "regular grid, with power lines entering from several directions."
    ),
    "expressway service area": (
        "A rest area beside a highway with a service building, gas station canopies and "
        "parking lots for cars and trucks, linked by ramps to both carriageways."
    ),
    "factory or power plant": (
        "An industrial complex of large halls, chimneys, conveyors, storage tanks or "
        "cooling towers, often with coal or material stockpiles and rail sidings."
    ),
    "farmland": (
        "Agricultural land divided into fields whose colour and texture vary by crop and "
        "season (green, yellow, brown), separated by straight boundaries, tracks and "
        "ditches."
    ),
    "farmstead": (
        "A cluster of a farmhouse, barns, sheds and silos around a yard, surrounded by fields "
        "and connected to a country road."
    ),
    "ferry terminal": (
        "A waterside facility with ferry berths and ramps, large queuing lanes and parking "
        "lots for vehicles waiting to board."
    ),
    "fire station": (
        "A building with several wide garage doors opening onto a paved forecourt, often "
        "with red fire engines parked outside and a training tower."
    ),
    "fish pond": (
        "Rectangular ponds separated by narrow embankments, usually arranged in grids, with "
        "green or brown water and sometimes aerators leaving white trails."
    ),
    "flooded area": (
        "Land temporarily under water: muddy brown water covering fields, roads and "
        "buildings, with only tree crowns and roofs emerging."
    ),
    "flooded road": (
        "A road partly or fully covered by muddy water, its outline interrupted where water "
        "crosses it, with surrounding land also waterlogged."
    ),
    "gas station": (
        "A small flat canopy over rows of fuel pumps beside a road, with a shop building and "
        "cars parked or queued in the forecourt."
    ),
    "glacier valley": (
        "A U-shaped mountain valley partly filled by a glacier: a white or grey-blue ice "
        "tongue with crevasses and dark moraine stripes between rock walls."
    ),
    "golf course": (
        "Winding strips of smooth bright-green fairways bordered by rough grass and trees, "
        "with small greens, white sand bunkers and ponds."
    ),
    "green farmland": (
        "Fields covered by a growing green crop, showing uniform or row-striped green "
        "texture in regular plots."
    ),
    "ground transportation station": (
        "A train or bus station: a large hall or canopy beside tracks or bus bays, with "
        "platforms, forecourts and parking."
    ),
    "highway": (
        "A wide multi-lane road with a central divider, smooth curves, grade-separated ramps "
        "and vehicles in lanes, cutting through its surroundings."
    ),
    "hirst": (
        "A sandbar or shoal in a river or along a shore: an elongated pale sand or gravel "
        "bank surrounded by water, sometimes partly vegetated."
    ),
    "hospital": (
        "A large complex of connected buildings with flat roofs, sometimes a rooftop "
        "helipad, ambulance bays and big parking lots."
    ),
    "hydroelectric power station": (
        "A dam across a river valley holding a reservoir, with a power house and spillways "
        "at its foot and turbulent water downstream."
    ),
    "idle land": (
        "Unused open ground inside or near urban areas, covered by bare soil, weeds or "
        "patchy grass, often fenced and awaiting development."
    ),
    "impoverished settlement": (
        "Very dense informal housing of small irregular shacks with corrugated roofs, narrow "
        "unpaved alleys and almost no vegetation."
    ),
    "industrial area": (
        "Large low buildings with flat grey, white or coloured metal roofs, storage yards, "
        "trucks and loading docks, with little vegetation."
    ),
    "industrial park": (
        "A planned zone of warehouses and factory buildings of similar size on regular "
        "plots, served by a wide road grid and truck parking."
    ),
    "irregular farmland": (
        "Farmland divided into small fields of irregular shapes and sizes following terrain "
        "or old boundaries, giving a patchwork of colours."
    ),
    "island": (
        "Land completely surrounded by water, seen as a patch of vegetation, rock or sand "
        "with a surf or beach fringe against dark or turquoise sea."
    ),
    "lakeshore": (
        "The edge of a lake where open water meets vegetation, beaches, reeds or buildings, "
        "with a smooth or indented shoreline."
    ),
    "landfill": (
        "A large site of dumped waste forming terraced mounds with dirty grey and brown "
        "texture, access ramps, trucks and partly grassed-over cells."
    ),
    "logistics center": (
        "Very large warehouse buildings with long rows of loading docks on one or both "
        "sides, truck trailers parked in lines and wide paved yards."
    ),
    "low scattered building": (
        "Low-rise buildings spread loosely over the area with gaps of vegetation and open "
        "ground between them."
    ),
    "marina": (
        "A sheltered basin with floating docks in comb patterns, crowded with many small "
        "white yachts and motorboats moored side by side."
    ),
    "meadow": (
        "Open land covered by grass and herbs with a smooth, uniform green or yellow-green "
        "texture and few trees or structures."
    ),
    "medium density scattered building": (
        "Buildings of moderate density placed irregularly, with vegetation and open space "
        "filling the gaps between them."
    ),
    "medium density structured building": (
        "Buildings of moderate density arranged in regular rows or blocks along a planned "
        "street grid."
    ),
    "medium residential": (
        "Houses on moderate-sized lots along curving or grid streets, with trees and lawns "
        "between roofs, denser than sparse but not continuous."
    ),
    "military airbase": (
        "An airfield with runways, hardened aircraft shelters, dispersed aprons, fenced "
        "perimeters and sometimes parked military aircraft."
    ),
    "military facility": (
        "A fenced compound of barracks, garages, training grounds and vehicle parks, often "
        "with regular building layouts and security perimeters."
    ),
    "mobile home park": (
        "Many small, uniform rectangular trailer homes parked in tight parallel rows along "
        "narrow internal streets."
    ),
    "mountain": (
        "Rugged high terrain with ridges, steep slopes and valleys, shown by strong shading "
        "contrasts; covered by forest, grass, rock or snow depending on altitude."
    ),
    "multi-unit residential": (
        "Apartment blocks of several storeys in repeated layouts, with shared courtyards, "
        "green spaces and parking lots."
    ),
    "nuclear power plant": (
        "A large power station with domed or cylindrical reactor buildings, turbine halls "
        "and often huge hyperbolic cooling towers, usually beside a river or coast."
    ),
    "nursing home": (
        "A single large low building or a few connected wings surrounded by lawns, paths and "
        "a modest car park, in a residential setting."
    ),
    "oil and gas field": (
        "Open land dotted with small cleared well pads connected by a network of dirt roads, "
        "with pumpjacks, tanks and pipelines."
    ),
    "palace": (
        "A large, often symmetric historic building complex with courtyards, ornate roofs "
        "and formal gardens or plazas around it."
    ),
    "park": (
        "A green urban space of lawns, tree groups, footpaths and often a pond, surrounded "
        "by streets and buildings."
    ),
    "parking lot": (
        "A paved area marked with parallel rows of parking spaces, filled with cars that "
        "appear as small coloured rectangles in regular lines."
    ),
    "plastic greenhouse": (
        "Fields covered by long, narrow white or translucent plastic tunnels in parallel "
        "rows, giving a bright, striped texture."
    ),
    "playground": (
        "A sports ground, typically a running track around a grass or synthetic field, or "
        "small play courts, often next to a school."
    ),
    "police station": (
        "An office building with a fenced lot of parked patrol cars, sometimes with a "
        "garage block and antenna mast."
    ),
    "pond": (
        "A small body of still water, usually under a few hectares, with dark, green or "
        "brownish water and vegetated banks."
    ),
    "port": (
        "A coastal or river facility with quays, piers and breakwaters where ships berth, "
        "with cranes, container stacks, warehouses and storage tanks on land."
    ),
    "prison": (
        "A compound of regular cell blocks inside high double fences or walls with "
        "watchtowers at the corners and empty yards."
    ),
    "quarry": (
        "An open excavation in rock with stepped benches, pale exposed stone, haul roads "
        "and stockpiles of crushed material."
    ),
    "race track": (
        "A closed oval or winding paved circuit, with grandstands along the straight, pit "
        "buildings and grass or gravel run-off areas."
    ),
    "rail yard": (
        "A broad fan of many parallel railway tracks where trains are sorted and stored, "
        "filled with long lines of freight cars."
    ),
    "railway station": (
        "A station building beside several parallel tracks with long narrow platforms, "
        "often under canopy roofs, where trains stop."
    ),
    "recreational facility": (
        "An area for sport and leisure: courts, pools, fields and club buildings, often "
        "surrounded by lawns and parking."
    ),
    "rectangular farmland": (
        "Farmland divided into rectangular fields with straight boundaries, often in a "
        "regular grid, each field showing its own crop colour."
    ),
    "red structured factory building": (
        "An industrial block of factory halls with red or brown roofs arranged regularly "
        "along internal roads and paved yards."
    ),
    "refinery": (
        "An industrial plant with dense clusters of round storage tanks, distillation "
        "columns, pipe racks and flare stacks."
    ),
    "regular farmland": (
        "Farmland with fields of similar shape and size in a regular layout, separated by "
        "straight boundaries, roads or irrigation ditches."
    ),
    "residential area": (
        "Land mainly occupied by housing: repeated house or apartment roofs along streets, "
        "mixed with gardens, trees and parked cars."
    ),
    "resort": (
        "Leisure buildings such as hotels and villas set among landscaped gardens, pools, "
        "and often beaches or golf courses."
    ),
    "river delta": (
        "A fan-shaped lowland where a river splits into many branching channels before "
        "reaching the sea, with sediment plumes, wetlands and fields."
    ),
    "river or lake": (
        "A scene dominated by inland water, either a winding river channel or a lake "
        "surface, with surrounding banks and vegetation."
    ),
    "scattered blue roof factory building": (
        "Factory buildings with blue metal roofs spread irregularly among fields, roads or "
        "vacant land."
    ),
    "scattered red roof factory building": (
        "Factory buildings with red or brown roofs spread irregularly among fields, roads "
        "or vacant land."
    ),
    "school": (
        "One or more school buildings with a playground, sports field or running track and "
        "a small parking area, embedded in a residential neighbourhood."
    ),
    "sewage plant type 1": (
        "A wastewater treatment plant dominated by circular clarifier tanks with radial "
        "arms, laid out in rows beside rectangular basins."
    ),
    "sewage plant type 2": (
        "A wastewater treatment plant dominated by rectangular aeration and settling basins "
        "in parallel rows, with few circular tanks."
    ),
    "shipping yard": (
        "A port storage area filled with stacked shipping containers in long colourful "
        "rows, with gantry cranes and trucks moving between them."
    ),
    "shipyard": (
        "A waterside industrial site with dry docks, slipways, ships under construction or "
        "repair, large gantry cranes and fabrication halls."
    ),
    "shopping mall": (
        "A very large building with a flat roof, often with skylights, surrounded on all "
        "sides by extensive parking lots and access roads."
    ),
    "single-unit residential": (
        "Detached single-family houses on individual lots with gardens, driveways and "
        "sometimes backyard pools, along suburban streets."
    ),
    "ski resort": (
        "Mountain slopes with cleared downhill pistes cutting through forest, lift lines, "
        "and a village of hotels and car parks at the base; white in winter."
    ),
    "slum": (
        "An unplanned, extremely dense settlement of tiny makeshift dwellings with "
        "irregular metal roofs and narrow footpaths."
    ),
    "snow mountain": (
        "Mountainous terrain covered with snow and ice, bright white slopes and ridges "
        "contrasting with dark rock and shadows."
    ),
    "solar farm": (
        "Large fields of dark blue or black photovoltaic panel rows laid in parallel strips, "
        "often on bare or grassy ground, with inverters and access tracks."
    ),
    "solar thermal plant": (
        "A concentrated solar power station: thousands of mirrors arranged in circles "
        "around a central tower, or long rows of curved parabolic troughs."
    ),
    "space facility": (
        "A rocket launch or space-industry complex with launch pads, service towers, "
        "large assembly buildings and long roads across open land."
    ),
    "sparse residential": (
        "Widely spaced houses on large lots, separated by lawns, trees and fields, with few roads."
    ),
    "sports complex": (
        "A group of sports venues such as stadiums, courts, pools and training fields "
        "next to each other, sharing large parking lots."
    ),
    "square": (
        "An open paved public plaza surrounded by buildings, sometimes with fountains, "
        "patterned paving, trees or monuments."
    ),
    "stadium": (
        "An oval or rectangular arena with a sports field or track in the middle, "
        "surrounded by tiered stands and often a roof ring, with parking outside."
    ),
    "steel smelter": (
        "A heavy-industry plant with blast furnaces, long rolling-mill halls, chimneys, "
        "ore and coal stockpiles and rail tracks."
    ),
    "storage land": (
        "An open-air storage yard with piles of goods, materials or containers on paved or "
        "bare ground, surrounded by fences and warehouses."
    ),
    "suburb": (
        "The low-density outskirts of a city: detached houses, curving streets and "
        "cul-de-sacs, gardens, schools and shopping centres."
    ),
    "surface mine": (
        "A huge open pit or strip mine with terraced benches, bare grey or ochre earth, "
        "haul roads, spoil heaps and sometimes water at the bottom."
    ),
    "terrace": (
        "Hillsides cut into narrow stepped fields that follow the contour lines, giving a "
        "pattern of curved parallel bands."
    ),
    "thermal power plant": (
        "A power station with tall chimneys, cooling towers, boiler and turbine halls, coal "
        "yards and conveyors, often beside water."
    ),
    "town": (
        "A small urban settlement of houses and low buildings along a street network, "
        "with a central area and surrounding fields."
    ),
    "university campus": (
        "Large academic and residential buildings spread across lawns and tree-lined "
        "walkways, with sports facilities and parking lots."
    ),
    "village": (
        "A small rural cluster of houses and farm buildings along a few roads, surrounded "
        "by fields and trees."
    ),
    "volcano": (
        "A conical mountain with a summit crater, radial erosion gullies and dark lava "
        "flows or ash deposits on its flanks."
    ),
    "waste disposal": (
        "A site for dumping or processing refuse: mounds of mixed waste, compacted cells, "
        "truck ramps and sometimes lagoons of leachate."
    ),
    "wastewater treatment plant": (
        "A plant with circular clarifier tanks and rectangular aeration basins of dark or "
        "foamy water, pipes and small buildings, often near a river."
    ),
    "water park": (
        "A leisure park with pools of bright turquoise water, colourful winding water "
        "slides, sun decks and parking lots."
    ),
    "water treatment facility": (
        "A plant with rows of rectangular and circular basins filled with water at "
        "different stages of treatment, pipes and pump buildings."
    ),
    "wildfire scar": (
        "A large patch of burned land in dark brown to black tones with sharp irregular "
        "edges against unburned vegetation."
    ),
    "wind farm": (
        "Many wind turbines spaced hundreds of metres apart across fields, hills or sea, "
        "each a tall white mast with three blades and a long shadow, linked by tracks."
    ),
    "zoo": (
        "A park with many small fenced enclosures, animal houses, ponds and winding "
        "visitor paths among trees."
    ),
}

_LANDCOVER: dict[str, str] = {
    "agricultural areas": (
        "All farmed land: arable fields, permanent crops, pastures and mixed farming, "
        "forming patchworks of fields with straight boundaries (CORINE level 1)."
    ),
    "agriculture with significant natural vegetation": (
        "Farmland interrupted by substantial patches of natural vegetation such as scrub, "
        "woodland or wetland, giving a fine mosaic of fields and natural cover."
    ),
    "agro-forestry areas": (
        "Crops or pasture grown under scattered trees, seen as open fields or grassland "
        "dotted with evenly spaced tree crowns."
    ),
    "airport area": (
        "Land occupied by airport installations, from runways and aprons to terminals and "
        "the grass between them, as a land-cover unit."
    ),
    "algal bloom": (
        "Water coloured bright green or turquoise by dense algae, often in swirls and "
        "streaks that follow currents in lakes or coastal sea."
    ),
    "annual cropland": (
        "Fields sown and harvested within a year, such as cereals or vegetables, whose "
        "colour changes strongly with season from bare soil to green to yellow."
    ),
    "annual crops associated with permanent crops": (
        "Annual crops grown on the same parcels as permanent crops, seen as fields mixed "
        "with rows of fruit trees or vines."
    ),
    "arable land": (
        "Cultivated land ploughed and sown regularly, showing fields of bare soil or crops "
        "with straight boundaries and machine tracks."
    ),
    "artificial dense forest land": (
        "Planted forest with a closed canopy, tree crowns of uniform size and often "
        "visible straight planting rows."
    ),
    "artificial grassland": (
        "Man-made or sown grass surfaces such as lawns and artificial turf, bright and "
        "uniformly green with sharp edges."
    ),
    "artificial non-agricultural vegetated areas": (
        "Vegetated land inside built-up areas, such as parks, sport grounds and gardens: "
        "green patches of lawn and trees framed by streets and roofs (CORINE level 2)."
    ),
    "artificial sparse forest land": (
        "Planted forest with widely spaced trees in rows, soil or grass visible between the crowns."
    ),
    "artificial surfaces": (
        "Land covered by man-made structures and sealed surfaces: buildings, roads, "
        "industry and urban green (CORINE level 1)."
    ),
    "bare ground": (
        "Land with little or no vegetation: exposed soil, sand or rock in brown, grey or "
        "beige tones, lacking regular field patterns."
    ),
    "bare rock": (
        "Exposed rock surfaces such as cliffs, rock fields and screes, grey to brown, "
        "rough-textured and without vegetation."
    ),
    "bare soil": (
        "Exposed earth without plant cover, for example ploughed fields or cleared land, "
        "smooth brown to reddish texture."
    ),
    "barren or sparse vegetation": (
        "Land with exposed soil, sand or rock and at most thin, scattered vegetation, in "
        "beige, brown or grey tones."
    ),
    "beach": (
        "A strip of pale sand or pebbles along a shoreline between the water line and "
        "vegetation or buildings, often with a visible surf band."
    ),
    "beaches, dunes and sands": (
        "Sandy or pebbly coastal and inland surfaces: beaches, dune fields and sand plains, "
        "bright beige with ripples or dune ridges."
    ),
    "broad-leaved forest": (
        "Forest of deciduous or evergreen broadleaf trees with rounded, bright-to-medium "
        "green crowns forming a bumpy canopy; bare in winter where deciduous."
    ),
    "built-up area": (
        "Land covered by buildings, roads and other sealed surfaces, with a grey, "
        "high-contrast texture of roofs and streets."
    ),
    "burnt areas": (
        "Recently burned vegetation, dark brown to black with sharp irregular edges, "
        "sometimes with remaining standing dead trees."
    ),
    "canal": (
        "An artificial waterway with straight or gently curved banks of constant width, "
        "often with locks, towpaths and bridges."
    ),
    "chaparral": (
        "Dense evergreen shrubland of dry climates, a rough dark-green to olive texture on "
        "hillsides, often crossed by firebreaks."
    ),
    "clear-cut": (
        "Forest area where all trees were felled, a sharp-edged bright patch of stumps, "
        "slash and bare soil inside darker forest."
    ),
    "cloud": (
        "Bright white or grey masses with soft edges that hide the ground, from thin haze "
        "to thick cumulus casting dark shadows."
    ),
    "cloud shadow": (
        "Dark patches on the ground shaped like a nearby cloud and offset from it in the "
        "direction opposite the sun."
    ),
    "coastal lagoon": (
        "A shallow body of salt or brackish water separated from the sea by a sand bar or "
        "barrier island, calm and lighter than the open sea."
    ),
    "complex cultivation patterns": (
        "A mosaic of small parcels with different annual crops, pasture and permanent "
        "crops next to each other, giving a fine, varied patchwork."
    ),
    "coniferous forest": (
        "Forest of needle-leaved trees with dark green, pointed crowns casting sharp "
        "shadows; keeps its colour through the year."
    ),
    "construction land": (
        "Land under construction as a land-cover unit: cleared and excavated soil, "
        "foundations and building sites."
    ),
    "continuous urban fabric": (
        "Densely built land where buildings, roads and paved surfaces cover nearly "
        "everything, with little vegetation."
    ),
    "coral reef": (
        "Shallow tropical reef seen through clear water as turquoise to brown mottled "
        "patches and rings, bordered by deeper dark blue water."
    ),
    "cropland": (
        "Land used to grow crops, shown as fields whose colour changes through the season "
        "and whose boundaries are straight."
    ),
    "discontinuous urban fabric": (
        "Built-up land mixed with gardens, trees and lawns, typical of suburbs, where "
        "buildings and roads cover part of the surface."
    ),
    "dump sites": (
        "Landfills and mine or industrial waste dumps: heaps of grey and brown material "
        "with trucks and access tracks."
    ),
    "estuary": (
        "The tidal mouth of a river widening into the sea, with sediment-laden brown water, "
        "mudflats and channels."
    ),
    "flooded vegetation": (
        "Vegetation standing in water for much of the year, such as marsh, flooded grass or "
        "rice, with water glinting between plants."
    ),
    "floodwater": (
        "Temporary water covering normally dry land, muddy brown or grey, spreading "
        "irregularly over fields and roads."
    ),
    "forest": (
        "Land covered by a closed canopy of trees, a dense, rough green texture of "
        "individual crowns and shadows."
    ),
    "forest and semi-natural areas": (
        "Forests, shrubland, natural grassland and open land with little vegetation, "
        "seen as irregular natural textures without field grids (CORINE level 1)."
    ),
    "fruit trees and berry plantations": (
        "Orchards and berry plantations: trees or bushes in regular grids or rows, "
        "separated by grass or bare soil."
    ),
    "glaciers and perpetual snow": (
        "Permanent ice and snow in high mountains or polar regions, bright white to "
        "blue-grey, with crevasses and dark moraine bands."
    ),
    "grassland": (
        "Land covered by grasses and herbs with few trees, a smooth, uniform green to "
        "yellow-brown texture."
    ),
    "green urban areas": (
        "Parks, gardens and other green spaces inside a city, shown as lawns and trees "
        "surrounded by buildings and streets."
    ),
    "herbaceous vegetation": (
        "Land covered by low non-woody plants such as grasses and herbs, smooth green or "
        "yellow-green texture without tree crowns."
    ),
    "herbaceous wetland": (
        "Wet grassland, reeds and marsh vegetation on waterlogged soil, mottled green and "
        "dark with standing water."
    ),
    "heterogeneous agricultural areas": (
        "Farmland mixing different uses within a small area, such as crops, pasture, trees "
        "and natural vegetation (CORINE level 2)."
    ),
    "impervious surface": (
        "Sealed ground that water cannot penetrate, such as asphalt, concrete and roofs, "
        "grey or dark and without vegetation."
    ),
    "industrial, commercial and transport units": (
        "Industrial and commercial sites, road and rail networks, ports and airports: "
        "large flat roofs, paved yards and long transport corridors (CORINE level 2)."
    ),
    "industrial or commercial units": (
        "Land occupied by factories, warehouses, shops and offices with large flat roofs "
        "and paved yards."
    ),
    "inland marshes": (
        "Low-lying freshwater land flooded part of the year, with reeds and herbaceous "
        "plants mixed with pools."
    ),
    "inland waters": (
        "Rivers, canals, lakes and reservoirs inland, dark smooth surfaces against the "
        "surrounding land (CORINE level 2)."
    ),
    "inland wetlands": (
        "Freshwater marshes and peat bogs, saturated ground with mixed vegetation and "
        "standing water (CORINE level 2)."
    ),
    "intertidal flats": (
        "Mud or sand flats exposed at low tide and flooded at high tide, grey-brown and wet "
        "with branching tidal creeks."
    ),
    "lake": (
        "A body of standing inland water, dark blue to green and smooth, with a closed "
        "shoreline of vegetation, beaches or buildings."
    ),
    "lawn": (
        "Short mown grass around houses, parks and sports grounds, uniformly bright green "
        "and smooth, often with mower stripes."
    ),
    "mangrove": (
        "Dense salt-tolerant forest along tropical coasts and estuaries, dark green canopy "
        "cut by winding tidal channels."
    ),
    "marine waters": (
        "Sea, ocean, coastal lagoons and estuaries: open salt or brackish water, dark "
        "blue offshore and lighter or muddier near coasts (CORINE level 2)."
    ),
    "maritime wetlands": (
        "Coastal wetlands such as salt marshes, salines and intertidal flats, flooded by "
        "the sea at times; muddy, creek-cut surfaces and pond grids (CORINE level 2)."
    ),
    "mine, dump and construction sites": (
        "Mineral extraction sites, dump sites and construction sites: disturbed bare land "
        "with pits, heaps and machinery tracks (CORINE level 2)."
    ),
    "mineral extraction sites": (
        "Open-pit mines and quarries: terraced pits of bare pale or ochre rock and soil, "
        "haul roads and stockpiles."
    ),
    "mixed forest": (
        "Forest mixing coniferous and broad-leaved trees, with crowns of different shapes "
        "and shades of green."
    ),
    "moors and heathland": (
        "Low, dense shrubs such as heather on poor soils, brownish to purple-green, "
        "treeless and rolling."
    ),
    "moors, heathland and sclerophyllous vegetation": (
        "Low shrub vegetation ranging from heather moors to dry evergreen Mediterranean "
        "scrub, treeless and rough in texture."
    ),
    "moss and lichen": (
        "Ground covered by mosses and lichens, typical of tundra and high mountains, pale "
        "grey-green to brown and very low."
    ),
    "natural dense forest land": (
        "Natural forest with a closed, irregular canopy of trees of different sizes and species."
    ),
    "natural grassland": (
        "Grassland that is not intensively managed, with uneven tones and scattered "
        "shrubs, often on hills."
    ),
    "natural grassland and sparsely vegetated areas": (
        "Unmanaged grassland together with land where vegetation is thin, from green "
        "pasture-like cover to patchy bare ground."
    ),
    "natural sparse forest land": (
        "Natural forest where trees stand apart, with ground vegetation or soil visible "
        "between irregularly spaced crowns."
    ),
    "non-irrigated arable land": (
        "Rain-fed arable fields of cereals and other crops, with regular boundaries and "
        "seasonal colour changes."
    ),
    "oil palm plantation": (
        "Tropical plantations of palm trees in regular grids, star-shaped crowns evenly "
        "spaced, crossed by straight access roads."
    ),
    "olive groves": (
        "Olive trees planted in regular grids with wide spacing, small grey-green crowns "
        "on bare or dry soil."
    ),
    "open spaces with little or no vegetation": (
        "Beaches, dunes, bare rock, sparsely vegetated and burnt areas and glaciers: "
        "bright or dark surfaces with little green cover (CORINE level 2)."
    ),
    "orchard": (
        "Fruit trees planted in regular rows or grids, with round crowns and grass or soil "
        "between them."
    ),
    "paddy field": (
        "Flooded rice fields in small, level plots separated by low bunds, shining with "
        "water early in the season and green later."
    ),
    "pasture": (
        "Grassland used for grazing, uniform green fields often bounded by hedges or "
        "fences, sometimes with animal tracks and water troughs."
    ),
    "peat bog": (
        "Waterlogged peat land with mosses and low shrubs, brownish with pools and "
        "sometimes cut into strips by peat extraction."
    ),
    "permanent crops": (
        "Crops occupying the land for many years, such as vineyards, orchards and olive "
        "groves, planted in regular rows or grids."
    ),
    "permanently irrigated land": (
        "Fields irrigated permanently or regularly, often greener than surroundings, with "
        "canals, ditches or centre pivots."
    ),
    "plantation forest": (
        "Commercial tree plantations of a single species, with uniform crowns in straight "
        "rows and blocks separated by firebreaks."
    ),
    "port areas": (
        "Land of port infrastructure: quays, docks, container yards and warehouses along the water."
    ),
    "reed bed": (
        "Dense stands of tall reeds at lake margins and in marshes, a uniform grey-green "
        "texture with channels of water."
    ),
    "reservoir": (
        "An artificial lake behind a dam, often with a straight dam wall at one end, "
        "branching arms up valleys and a bare drawdown rim."
    ),
    "rice fields": (
        "Land prepared for rice cultivation, small levelled plots periodically flooded, "
        "shining with water or dense green."
    ),
    "river": (
        "A natural channel of flowing water, a dark or brownish ribbon winding through the "
        "landscape, with banks, sandbars and bridges."
    ),
    "river protection forest": (
        "Belts of trees planted along river banks and dikes to stabilise them, long narrow "
        "strips of forest following the water."
    ),
    "road and rail networks and associated land": (
        "Motorways, railways and their embankments, verges and service areas, as long "
        "corridors of sealed surface."
    ),
    "rock outcrop": (
        "Patches where bedrock breaks through soil and vegetation, grey or reddish rough "
        "surfaces with cracks and shadows."
    ),
    "salines": (
        "Salt works: grids of shallow evaporation ponds in white, pink or turquoise tones, "
        "separated by narrow dikes."
    ),
    "salt flat": (
        "A very flat, bright white or pale grey plain of salt crust in a dry basin, "
        "sometimes with a thin film of water."
    ),
    "salt marshes": (
        "Coastal vegetated wetland flooded by tides, green to brown with a dense network "
        "of winding creeks."
    ),
    "sand dunes": (
        "Fields of wind-shaped sand hills with regular crests and shadowed slip faces, "
        "beige to orange."
    ),
    "sapling": (
        "Young trees recently planted in regular rows, small crowns spaced apart with bare "
        "soil or grass dominant."
    ),
    "savanna": (
        "Grassland with scattered trees or shrubs, a yellow-green to brown matrix dotted "
        "by isolated dark crowns."
    ),
    "sclerophyllous vegetation": (
        "Dense evergreen shrub with hard leaves typical of Mediterranean climates, "
        "dark olive-green, rough and patchy."
    ),
    "scrub and herbaceous vegetation associations": (
        "Natural grassland, moors, heathland, sclerophyllous scrub and transitional "
        "woodland: rough, patchy low vegetation without tree canopy (CORINE level 2)."
    ),
    "sea": (
        "Open marine water, uniformly dark blue or turquoise near shore, with waves, "
        "ship wakes and sun glint."
    ),
    "sea ice": (
        "Frozen sea surface: white to grey floes and pack ice separated by dark cracks "
        "and leads of open water."
    ),
    "shrubland": (
        "Land dominated by bushes and shrubs lower than trees, a rough, patchy texture of "
        "small dark crowns over soil or grass."
    ),
    "snow and ice": (
        "Land covered by snow, glaciers or ice, bright white to blue-grey, hiding the "
        "underlying terrain except for shadows."
    ),
    "sparse forest": (
        "Forest with widely spaced trees whose crowns do not touch, soil or grass "
        "visible between them."
    ),
    "sparsely vegetated areas": (
        "Land with scattered vegetation covering only part of the ground, such as steppe "
        "or scree, patchy green over bare soil."
    ),
    "sport and leisure facilities": (
        "Sports grounds, golf courses, campsites and leisure parks as land cover, mostly "
        "mown grass with courts and small buildings."
    ),
    "stream": (
        "A small narrow watercourse winding through fields or forest, often partly "
        "hidden by trees along its banks."
    ),
    "tailings pond": (
        "Ponds where mine waste settles, with unnaturally coloured water (grey, orange, "
        "turquoise) inside earthen dams next to a mine."
    ),
    "tea plantation": (
        "Hillsides covered by tea bushes in tightly spaced parallel rows following the "
        "contours, a fine striped dark green texture."
    ),
    "transitional woodland-shrub": (
        "Shrubby vegetation with young trees, such as forest regrowth or clear-cuts being "
        "recolonised, a patchy mix of shrubs and small crowns."
    ),
    "tree cover": (
        "Any land where tree crowns dominate, from forest to tree groups, a rough green "
        "texture of crowns and shadows."
    ),
    "tundra": (
        "Treeless arctic or alpine land of low shrubs, mosses and sedges, mottled green "
        "and brown with many small ponds."
    ),
    "turbid water": (
        "Water carrying heavy sediment, appearing light brown, tan or milky rather than "
        "dark blue, often near river mouths."
    ),
    "urban fabric": (
        "Land covered by residential buildings, roads and gardens, continuous or "
        "discontinuous: a grey grid of roofs and streets with green gaps (CORINE level 2)."
    ),
    "vegetable plot": (
        "Small intensively cultivated plots of vegetables in narrow beds, a fine striped "
        "patchwork of greens and soil."
    ),
    "vineyards": (
        "Grapevines in long, closely spaced parallel rows, a fine striped texture often on slopes."
    ),
    "water": (
        "Any open water surface, rivers, lakes or sea, dark and smooth in visible bands "
        "(CORINE level 1 water bodies)."
    ),
    "wetland": (
        "Land saturated with water such as marshes, swamps and bogs, a mottled mix of "
        "vegetation and standing water."
    ),
}

_OBJECT: dict[str, str] = {
    "airbus a220": (
        "A small twin-engine narrow-body airliner about 35-38 m long with a wingspan of "
        "about 35 m and engines under the wings."
    ),
    "airbus a321": (
        "A twin-engine narrow-body airliner about 44 m long with a wingspan of about 36 m; "
        "the fuselage looks long compared to the wings."
    ),
    "airbus a330": (
        "A twin-engine wide-body airliner about 58-64 m long with a wingspan of about "
        "60-64 m and large engines under the wings."
    ),
    "airbus a350": (
        "A twin-engine wide-body airliner about 67-74 m long with a 65 m wingspan ending in "
        "curved, upswept wingtips."
    ),
    "aircraft carrier": (
        "A very large warship, about 250-330 m long, with a flat grey flight deck, an "
        "island superstructure on one side and often parked aircraft."
    ),
    "aircraft hangar": (
        "A large building with a wide arched or flat roof at an airfield, with a big door "
        "opening onto the apron."
    ),
    "airplane": (
        "A fixed-wing aircraft seen as a cross-shaped silhouette of fuselage, swept wings "
        "and tail, usually white or grey, parked at aprons or on runways."
    ),
    "airport terminal": (
        "A large passenger building at an airport with long piers or fingers and jet "
        "bridges where airplanes dock, with roads and car parks landside."
    ),
    "apartment building": (
        "A multi-storey residential block with a large flat or pitched roof, repeated "
        "layout, and shared parking and green space."
    ),
    "barge": (
        "A flat-bottomed, rectangular cargo vessel without its own superstructure, often "
        "pushed or towed in lines on rivers, carrying bulk goods."
    ),
    "barn": (
        "A large rural building with a long gable roof, often red, grey or metal, next to "
        "fields and farm yards."
    ),
    "baseball field": (
        "A fan-shaped field with a brown dirt diamond, a curved infield arc and green "
        "outfield, often with lights and stands."
    ),
    "basketball court": (
        "A rectangular hard court about 28 by 15 m, painted in blue, green or red with "
        "white lines and semicircular key areas, often in pairs."
    ),
    "boat ramp": (
        "A concrete slope running from a parking lot into water, used to launch small "
        "boats, often with cars with trailers nearby."
    ),
    "boeing 737": (
        "A twin-engine narrow-body airliner about 31-44 m long with a wingspan of about "
        "34-36 m, engines slung under the wings."
    ),
    "boeing 747": (
        "A four-engine wide-body jumbo airliner about 70-76 m long with a wingspan of "
        "about 60-68 m; the four engines under the wings identify it."
    ),
    "boeing 777": (
        "A large twin-engine wide-body airliner about 64-74 m long with a wingspan of about "
        "61-65 m and very large engine nacelles."
    ),
    "boeing 787": (
        "A twin-engine wide-body airliner about 57-69 m long with a wingspan of about 60 m "
        "and long, smoothly raked wingtips."
    ),
    "box truck": (
        "A truck with a closed rectangular cargo box mounted behind the cab, about 6-10 m "
        "long, with a flat white or coloured roof."
    ),
    "breakwater": (
        "A long barrier of rock or concrete projecting into the sea to shelter a harbour, "
        "with waves breaking on its outer side."
    ),
    "bridge": (
        "A structure carrying a road or railway over water or a valley, a straight linear "
        "deck crossing the obstacle and casting a shadow on the water."
    ),
    "building": (
        "A roofed structure seen as a polygon of uniform roof texture with sharp edges and a "
        "shadow on one side."
    ),
    "bulk carrier": (
        "A long cargo ship with a row of large square hatch covers along the deck and the "
        "bridge at the stern."
    ),
    "bus": (
        "A long rectangular road vehicle about 10-18 m long and 2.5 m wide, often with a "
        "flat white roof and air-conditioning units."
    ),
    "cargo plane": (
        "A transport aircraft, often with a high wing and a wide fuselage with a rear "
        "ramp, parked at cargo aprons."
    ),
    "cargo truck": (
        "A truck carrying goods in an open bed or closed box, about 6-12 m long, seen as a "
        "cab followed by a larger cargo section."
    ),
    "cement mixer": (
        "A truck carrying a large rotating drum, seen from above as a cab followed by an "
        "elongated cylinder, at construction sites."
    ),
    "center pivot": (
        "A circular irrigated field made by a rotating sprinkler arm, with the pivot point "
        "in the centre and concentric wheel tracks."
    ),
    "chimney": (
        "A tall thin stack at a factory or power plant, a small circle from above with a "
        "very long narrow shadow."
    ),
    "church": (
        "A Christian place of worship, often cross-shaped in plan with a pitched roof, "
        "a tower or spire casting a long shadow, in a town or churchyard."
    ),
    "closed road": (
        "A road blocked or no longer used, partly overgrown or cut by barriers, with no "
        "traffic and sometimes cracks."
    ),
    "coal pile": (
        "A large black heap or elongated stockpile of coal at a power plant or port, often "
        "beside conveyors and stacker machines."
    ),
    "comac arj21": (
        "A regional jet about 33 m long with a wingspan of about 27 m, two engines mounted "
        "at the rear of the fuselage and a T-tail."
    ),
    "comac c919": (
        "A twin-engine narrow-body airliner about 39 m long with a wingspan of about 36 m, "
        "similar in outline to other single-aisle jets."
    ),
    "container crane": (
        "A large ship-to-shore gantry crane on the quay of a port, a rectangular frame with "
        "a long boom reaching over the water, casting a lattice shadow."
    ),
    "container ship": (
        "A long cargo ship with its deck covered by stacked rectangular containers in many "
        "colours, bridge near the stern or mid-ship."
    ),
    "container yard": (
        "An open lot where shipping containers are stored in long, tightly packed rows of "
        "colourful rectangles, served by cranes and trucks."
    ),
    "control tower": (
        "A tall airport tower with a glazed cab at the top, seen as a small round or "
        "polygonal roof with a long shadow near the terminal."
    ),
    "cooling tower": (
        "A huge hyperbolic concrete tower at a power plant, a large circle from above, "
        "often with steam plumes."
    ),
    "crane": (
        "A lifting machine seen as a long narrow boom with a thin lattice shadow, at ports, "
        "construction and industrial sites."
    ),
    "crane truck": (
        "A truck fitted with a folded hydraulic crane boom on its bed, about 8-12 m long."
    ),
    "cricket field": (
        "A large oval grass field with a rectangular light-brown pitch strip in the middle "
        "and a boundary rope near the edge."
    ),
    "cross river bridge": (
        "A long bridge spanning a river, a straight deck on piers between the two banks, "
        "with its shadow on the water."
    ),
    "crosswalk": (
        "White stripes painted across a road at a pedestrian crossing, a ladder pattern "
        "a few metres wide, often near intersections."
    ),
    "cruise ship": (
        "A very large white passenger ship with many decks, pools and deck chairs on top, "
        "docked at terminals or at sea."
    ),
    "dam": (
        "A massive wall across a river valley holding back a reservoir, straight or curved, "
        "with spillways and calm water on the upstream side."
    ),
    "damaged building": (
        "A building with a partly collapsed or burned roof, with holes, debris and "
        "irregular outlines next to intact structures."
    ),
    "dirt road": (
        "An unpaved road of bare soil or gravel, brown or pale, narrower and less regular "
        "than paved roads, across fields or forest."
    ),
    "dry cargo ship": (
        "A cargo ship carrying solid goods in holds under hatch covers, with cranes or "
        "derricks on deck and superstructure at the stern."
    ),
    "dry dock": (
        "A rectangular basin at a shipyard that can be drained, often holding a ship on "
        "blocks, with cranes along its edges."
    ),
    "dump truck": (
        "A truck with an open tipping box behind the cab, often loaded with earth or "
        "gravel, at construction sites and mines."
    ),
    "engineering ship": (
        "A work vessel such as a dredger, pipe layer or crane ship, with booms, pipes or "
        "heavy equipment on deck."
    ),
    "engineering vehicle": (
        "Heavy machinery used in construction, mining and ports, such as excavators, "
        "bulldozers, graders and cranes, usually yellow or orange."
    ),
    "excavator": (
        "A tracked machine with a rotating cab and a long articulated arm ending in a "
        "bucket, usually yellow, on construction sites."
    ),
    "facility": (
        "A compound of buildings, yards and infrastructure serving one purpose, usually "
        "fenced, with access roads and parking."
    ),
    "ferry": (
        "A passenger or car ferry with a broad, often double-ended hull, a vehicle deck and "
        "passenger decks, docked at terminal ramps."
    ),
    "fighter jet": (
        "A small military aircraft about 15-20 m long with a pointed nose and swept or "
        "delta wings, often grey and parked in shelters."
    ),
    "fish cage": (
        "Floating circular or square pens for fish farming in sheltered coastal waters, "
        "seen as rings of floats arranged in groups."
    ),
    "fishing boat": (
        "A small to medium vessel, about 10-40 m long, with masts, nets or booms on deck, "
        "often moored in groups at fishing harbours."
    ),
    "flare stack": (
        "A tall thin stack at a refinery or gas field that burns off gas, sometimes with a "
        "visible flame and scorched ground around the base."
    ),
    "flat car": (
        "A railway freight car with a flat open deck, sometimes carrying containers or "
        "vehicles, in long trains."
    ),
    "flatbed truck": (
        "A truck with an open flat platform behind the cab for long or bulky loads, "
        "sometimes carrying pipes or machinery."
    ),
    "footbridge": (
        "A narrow bridge for pedestrians over a road, railway or river, much narrower "
        "than road bridges."
    ),
    "fountain": (
        "A round or decorative water basin in a plaza or park, often with a central jet "
        "and a ring of paving around it."
    ),
    "freight car": (
        "A railway wagon for goods, such as boxcars, hoppers, tank cars and flat cars, "
        "coupled in long trains."
    ),
    "front loader or bulldozer": (
        "A heavy earth-moving machine with a wide front blade or bucket, usually yellow, "
        "moving soil at construction sites."
    ),
    "gas holder": (
        "A large cylindrical gas storage tank, a big circle from above with a lattice "
        "frame around its edge."
    ),
    "glider": (
        "An unpowered aircraft with a slim fuselage and very long narrow wings, usually "
        "white, at small airfields."
    ),
    "greenhouse": (
        "A building with a glass or plastic roof, bright and reflective, often in long "
        "rows of gabled bays."
    ),
    "ground grader": (
        "A long road-building machine with a blade slung between the front and rear axles, "
        "usually yellow."
    ),
    "ground track field": (
        "An oval running track, usually red or blue, surrounding a green grass or "
        "synthetic field, about 180 by 90 m."
    ),
    "harbor": (
        "Waterside structures for mooring ships and boats, such as piers, docks and "
        "jetties extending from the shore, often with vessels alongside."
    ),
    "haul truck": (
        "A very large off-road dump truck used in mines, much bigger than road trucks, on "
        "wide haul roads in open pits."
    ),
    "hay bale": (
        "Small round or rectangular bales of hay or straw scattered or stacked on harvested "
        "fields, pale yellow with short shadows."
    ),
    "hedgerow": (
        "A narrow line of shrubs and trees along field boundaries, dark green strips "
        "between fields."
    ),
    "helicopter": (
        "A rotorcraft seen as a compact fuselage with a long thin tail boom and the cross "
        "or disc of its rotor blades, often on helipads."
    ),
    "helipad": (
        "A small landing pad marked with a large H inside a circle or square, on the ground "
        "or on rooftops."
    ),
    "house": (
        "A small detached residential building, about 10-20 m across, with a gabled or "
        "hipped roof, surrounded by a garden."
    ),
    "hut or tent": (
        "A small temporary or simple shelter, such as a shack or tent, a few metres "
        "across, often clustered in camps."
    ),
    "ice rink": (
        "A rectangular skating surface with rounded corners, smooth and white, outdoors "
        "or under a roof."
    ),
    "interchange": (
        "A junction of highways with ramps and loops on several levels, forming "
        "cloverleaf or spaghetti-like patterns of curved roads."
    ),
    "intersection": (
        "A point where roads cross, seen as a cross or T shape with lane markings, "
        "crosswalks and sometimes waiting cars."
    ),
    "kayak": (
        "A very small narrow boat a few metres long, often brightly coloured, on beaches, "
        "rivers or lakes."
    ),
    "large vehicle": (
        "A road vehicle larger than a car, such as a truck, bus or trailer, a long "
        "rectangle on roads and in parking lots."
    ),
    "levee": (
        "A long raised earthen embankment along a river or coast, with a flat crest often "
        "carrying a path or road."
    ),
    "level crossing": (
        "A place where a road crosses a railway at the same level, with barriers and "
        "markings where the tracks cut the road."
    ),
    "lighthouse": (
        "A tower on a coast or island with a lantern at the top, a small round footprint "
        "with a long shadow and often a keeper's house."
    ),
    "liquid cargo ship": (
        "A tanker carrying oil, chemicals or gas, with a long flat deck covered by pipes "
        "and the superstructure at the stern."
    ),
    "locomotive": (
        "A railway engine at the head of a train, a long rectangle on rails, often a "
        "different colour from the cars behind it."
    ),
    "military aircraft": (
        "An aircraft for military use, from fighters to transports and tankers, often grey "
        "and parked at air bases near shelters."
    ),
    "mobile crane": (
        "A wheeled or tracked crane vehicle with a telescopic boom, often extended with "
        "outriggers at construction sites."
    ),
    "mosque": (
        "A place of Islamic worship, often with a large central dome and one or more "
        "slender minarets casting long shadows, with a courtyard."
    ),
    "motorboat": (
        "A small powered boat a few to about 15 m long, often white, moored at marinas or "
        "moving with a V-shaped wake."
    ),
    "motorcycle": (
        "A two-wheeled motor vehicle about 2 m long, visible only at very high resolution "
        "as a small elongated shape on roads or in parking areas."
    ),
    "office building": (
        "A multi-storey building used for offices, with a large flat roof carrying "
        "technical equipment, often beside parking lots."
    ),
    "offshore platform": (
        "A structure standing in open sea on legs, with a square deck of equipment, "
        "cranes and a helipad, used for oil and gas production."
    ),
    "oil tanker": (
        "A long tanker ship, up to several hundred metres, with a flat deck covered by "
        "pipes running along its centre and the bridge at the stern."
    ),
    "oil well": (
        "A small well site with a pumpjack or wellhead on a cleared pad, connected by a "
        "dirt road and pipelines."
    ),
    "other airplane": (
        "Any fixed-wing aircraft not of a listed model, from light aircraft to military "
        "or uncommon airliners."
    ),
    "other ship": (
        "Any vessel not of a listed ship type, such as patrol, research or special-purpose ships."
    ),
    "other vehicle": (
        "Any road vehicle not of a listed type, such as special or uncommon vehicles on "
        "roads and lots."
    ),
    "overpass": (
        "A bridge carrying one road over another road or railway, with ramps and a shadow "
        "cast on the lower road."
    ),
    "parking garage": (
        "A multi-storey parking building, often with a flat top deck full of cars and "
        "spiral or straight ramps."
    ),
    "parking space": (
        "A single marked bay for one vehicle, a white-outlined rectangle about 2.5 by 5 m "
        "in a parking lot or along a street."
    ),
    "passenger ship": (
        "A ship carrying passengers, such as ferries and cruise ships, with multiple decks "
        "of cabins and usually white superstructure."
    ),
    "passenger vehicle": (
        "A vehicle for people, such as cars, vans and buses, on roads and in parking lots."
    ),
    "pickup truck": ("A light truck about 5-6 m long with a cab and an open cargo bed behind it."),
    "pier": (
        "A narrow platform extending from the shore into water on piles, for mooring boats "
        "or walking, with boats alongside."
    ),
    "pipeline": (
        "A long straight or gently curving pipe or cleared pipeline corridor across the "
        "landscape, often above ground on supports."
    ),
    "place of worship": (
        "A religious building such as a church, mosque or temple, often with domes, "
        "towers or distinctive roofs and a forecourt."
    ),
    "power line": (
        "High-voltage cables running between pylons, seen as thin lines and a cleared "
        "corridor through forest."
    ),
    "pylon": (
        "A steel lattice tower carrying power lines, seen as a small square base with a "
        "long lattice shadow, in lines across the land."
    ),
    "radar dome": (
        "A large white sphere or golf-ball-shaped dome protecting a radar antenna, at "
        "military, weather or air traffic sites."
    ),
    "railway": (
        "Railway tracks: thin parallel lines of rails on a gravel bed, straight or in "
        "gentle curves, often with several tracks side by side."
    ),
    "railway bridge": (
        "A bridge carrying railway tracks over a river, road or valley, often with a steel "
        "truss or arches."
    ),
    "railway passenger car": (
        "A railway coach for passengers, a long uniform rectangle with a flat roof, coupled "
        "in trains at stations."
    ),
    "railway vehicle": (
        "Any vehicle that runs on rails, such as locomotives, passenger coaches and freight cars."
    ),
    "reach stacker": (
        "A port vehicle with a long telescopic boom for lifting containers, moving in "
        "container yards."
    ),
    "road": (
        "A paved route for vehicles, a long grey or dark strip with lane markings, "
        "connecting settlements and forming networks."
    ),
    "road bridge": (
        "A bridge carrying a road over a river, valley or other road, with lanes and "
        "vehicles visible on the deck."
    ),
    "rooftop solar panel": (
        "Photovoltaic panels mounted on a building roof, dark blue or black rectangles in "
        "neat arrays."
    ),
    "roundabout": (
        "A circular road junction with a central island, often planted, around which "
        "traffic circulates, with roads leaving radially."
    ),
    "rugby field": (
        "A rectangular grass field with H-shaped goal posts at both ends and white lines, "
        "slightly larger than a soccer field."
    ),
    "runway": (
        "A long straight paved strip at an airport, usually 1-4 km long and 30-60 m wide, "
        "with white markings, numbers and tyre skid marks."
    ),
    "runway marking": (
        "White painted markings on a runway, such as threshold stripes, centre lines, "
        "numbers and touchdown zone bars."
    ),
    "sailboat": (
        "A small boat with a mast, sometimes with a white sail set, seen as a narrow hull "
        "with a long mast shadow."
    ),
    "satellite dish": (
        "A parabolic antenna, a bright circle or ellipse with a shadow, alone or in "
        "groups at communication stations."
    ),
    "scraper": (
        "A large earth-moving machine with a bowl for scraping and carrying soil, often "
        "pulled by a tractor unit, at construction sites."
    ),
    "settling tank": (
        "A circular or rectangular open tank at a water treatment plant, often with a "
        "rotating bridge arm across it."
    ),
    "shed": (
        "A small simple outbuilding in a garden or farm, a few metres across with a simple roof."
    ),
    "ship": (
        "A seagoing vessel with a pointed bow and squared stern, tens to hundreds of "
        "metres long, on water or at quays, often with a wake."
    ),
    "ship lock": (
        "A rectangular chamber in a canal or river with gates at both ends, where ships "
        "are raised or lowered, often beside a dam."
    ),
    "shipping container": (
        "A steel box 6 or 12 m long, a small coloured rectangle, usually stacked in rows "
        "or carried by ships and trucks."
    ),
    "silo": (
        "A tall cylindrical storage tower for grain or cement, a small circle with a long "
        "shadow, often in groups."
    ),
    "skate park": (
        "A concrete area with bowls, ramps and rails, pale grey and curving, in a park."
    ),
    "skyscraper": (
        "A very tall building, recognised from above by a long shadow, a small footprint "
        "relative to height and visible sides due to view angle."
    ),
    "small aircraft": (
        "A light aircraft about 7-15 m long with straight wings, often one engine, parked "
        "in rows at general aviation airfields."
    ),
    "small car": (
        "A passenger car about 4-5 m long and 2 m wide, a small rectangle of any colour on "
        "roads and in parking lots."
    ),
    "small vehicle": (
        "A car-sized road vehicle, such as a sedan, van or pickup, on roads and in parking lots."
    ),
    "soccer field": (
        "A rectangular grass field about 100 by 65 m with white lines, centre circle, "
        "penalty boxes and goals at both ends."
    ),
    "solar panel": (
        "Photovoltaic panels, dark blue or black rectangles arranged in tilted parallel "
        "rows on roofs or on the ground."
    ),
    "sports field": (
        "A marked playing surface for a sport, such as a court or pitch, with painted "
        "lines on grass, clay or synthetic surface."
    ),
    "sports stand": (
        "Tiered seating along a sports field or track, a long stepped structure with "
        "shadow and often a roof."
    ),
    "storage tank": (
        "A cylindrical tank for oil, gas or water, seen as a bright white or grey circle, "
        "often in groups in tank farms at refineries and ports."
    ),
    "straddle carrier": (
        "A tall port vehicle that straddles a container and carries it between its legs, "
        "a rectangular frame moving in container yards."
    ),
    "submarine": (
        "A long, narrow, dark cylindrical hull with a small tower (sail), moored at naval "
        "bases, mostly low in the water."
    ),
    "swimming pool": (
        "A rectangular or kidney-shaped basin of bright turquoise water, in backyards, "
        "hotels and sports complexes."
    ),
    "tank car": (
        "A railway freight car carrying liquids in a long cylindrical tank, in trains near "
        "refineries and terminals."
    ),
    "tank truck": (
        "A truck carrying liquid or gas in a long cylindrical tank behind the cab, at "
        "fuel depots and gas stations."
    ),
    "taxiway": (
        "A paved path connecting runways to aprons and hangars, narrower than a runway, "
        "with yellow centre lines and curves."
    ),
    "tennis court": (
        "A rectangular court about 24 by 11 m, green, blue, red or clay-coloured with white "
        "lines and a net across the middle, often in rows."
    ),
    "toll station": (
        "A row of booths across a highway under a wide canopy, where lanes fan out to many "
        "parallel toll lanes."
    ),
    "tower": (
        "A tall narrow structure such as a communication or water tower, a small "
        "footprint with a long shadow."
    ),
    "tower crane": (
        "A tall fixed crane at a construction site with a long horizontal jib, seen as a "
        "thin line with a lattice shadow."
    ),
    "tractor": (
        "A farm vehicle with large rear wheels, often pulling implements across fields "
        "and leaving tracks."
    ),
    "traffic island": (
        "A raised or painted area separating traffic lanes, often triangular or oval and "
        "planted, at intersections."
    ),
    "trailer": (
        "An unpowered vehicle towed by a truck or car, a long rectangle often parked in "
        "rows at logistics yards."
    ),
    "transformer": (
        "An electrical transformer unit, a small rectangular box with cooling fins, in "
        "substations and next to power plants."
    ),
    "tree": (
        "A single tree, a round or irregular green crown with a shadow, in fields, "
        "streets or gardens."
    ),
    "truck": (
        "A large goods vehicle about 6-20 m long, a cab and a longer cargo body or trailer, "
        "on highways and at loading docks."
    ),
    "truck tractor": (
        "The cab unit of an articulated truck, seen without or with a semi-trailer coupled "
        "behind it."
    ),
    "tugboat": (
        "A small powerful boat about 20-35 m long with a broad hull, pushing or towing "
        "larger ships in ports."
    ),
    "tunnel opening": (
        "The portal where a road or railway enters a hill or passes underground, seen as a "
        "dark opening at the end of a cutting."
    ),
    "utility truck": (
        "A service truck with tool compartments, ladders or an aerial platform on the back."
    ),
    "van": (
        "A box-shaped light vehicle about 5-6 m long, slightly larger and taller than a "
        "car, often white."
    ),
    "vehicle": (
        "Any wheeled or tracked means of land transport, from cars to trucks, on roads, "
        "parking lots and yards."
    ),
    "viaduct": (
        "A long elevated road or railway carried on many spans over a valley or city, "
        "with rows of piers and a shadow below."
    ),
    "volleyball court": (
        "A small rectangular court about 18 by 9 m, often on sand at beaches, with a net "
        "across the middle."
    ),
    "warehouse": (
        "A large low building with a flat roof used for storage, with loading docks and "
        "trucks along one side."
    ),
    "warship": (
        "A grey naval vessel with a pointed bow, gun turrets, masts and radars, moored at "
        "naval bases."
    ),
    "water slide": ("A long, winding, brightly coloured tube or chute leading into a pool."),
    "water tower": (
        "An elevated tank on a column or legs, a round top with a long shadow, in towns "
        "and industrial sites."
    ),
    "weir": (
        "A low wall across a river that raises the water upstream, seen as a straight line "
        "of white turbulent water."
    ),
    "wind turbine": (
        "A tall white tower with three long blades; from above a small hub with a "
        "long shadow of mast and rotor, in wind farms."
    ),
    "yacht": (
        "A private leisure vessel, usually white and sleek, 10-100 m long, moored at "
        "marinas or anchored near coasts."
    ),
}

DESCRIPTIONS: dict[str, str] = {**_SCENE, **_LANDCOVER, **_OBJECT}
