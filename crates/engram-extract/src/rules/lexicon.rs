//! Static word lists. Each list is one string of `|`-separated lowercase
//! entries (so the file stays short), turned into a hash set the first time
//! it is used.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::LazyLock;

/// FNV-1a: the lists hold short static words, so a cheap hash beats the
/// default SipHash by a wide margin here.
#[derive(Default)]
pub(super) struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type Set = HashSet<&'static str, BuildHasherDefault<Fnv>>;

/// A lazily built set of lowercase entries.
pub(super) struct Lexicon(LazyLock<Set>);

impl Lexicon {
    /// Whether `lower` (already lowercase) is in the list.
    pub(super) fn has(&self, lower: &str) -> bool {
        self.0.contains(lower)
    }
}

macro_rules! lexicon {
    ($(#[$doc:meta])* $name:ident = $text:expr) => {
        $(#[$doc])*
        pub(super) static $name: Lexicon = Lexicon(LazyLock::new(|| {
            $text
                .split(['|', '\n'])
                .map(str::trim)
                .filter(|w| !w.is_empty())
                .collect()
        }));
    };
}

lexicon!(
    /// Words that open a sentence without adding anything; dropped wherever
    /// they lead a clause.
    FILLERS = "yeah|yea|yeh|yep|yup|ya|yah|oh|ooh|ohh|oooh|ah|ahh|aw|aww|awww|haha|hahaha|hah|heh|
    hehe|lol|lmao|rofl|omg|wow|woah|whoa|well|so|actually|honestly|hey|hi|hello|hiya|hmm|hmmm|um|
    umm|uh|uhh|ok|okay|anyway|anyways|btw|and|but|plus|also|then|now|gosh|jeez|yay|yikes|ugh|oops|
    alright|thanks|thx|ty|dear|anyhow|besides|still|though"
);

lexicon!(
    /// Interjections dropped at a clause start only when punctuation follows
    /// ("Totally, I ..." but not "Totally agree").
    SOFT_FILLERS = "yes|no|nope|nah|sure|right|true|totally|absolutely|definitely|exactly|agreed|
    indeed|same|nice|cool|great|awesome|amazing|congrats|congratulations|sweet|perfect|wonderful|
    lovely|fantastic|brilliant|excellent|good|bravo|wait|seriously|really|man|dude|girl|bro|wild|
    cute|beautiful|gorgeous|incredible|interesting|sorry|please|wild|crazy|sad|hmm|yikes"
);

lexicon!(
    /// Adverbs that may sit between a subject and its verb.
    ADVERBS = "really|just|also|still|always|never|recently|finally|actually|totally|definitely|
    truly|usually|often|sometimes|even|already|only|kinda|absolutely|seriously|honestly|literally|
    mostly|probably|currently|now|then|first|rarely|barely|hardly|personally|certainly|genuinely|
    sincerely|simply|basically|mainly|occasionally|normally|generally|typically|especially|
    constantly|completely|fully|deeply|strongly|highly|so|def|lowkey|legit|ever|once|later|
    eventually|initially|suddenly|immediately|quickly|slowly|gradually|somehow|accidentally|
    luckily|unfortunately|fortunately|obviously|clearly|almost|nearly|partly|all|both|sorta|
    officially|secretly|sometime|regularly|hopefully|gladly|happily|proudly|truthfully|surely|
    badly|desperately|totally|pretty|too|both"
);

lexicon!(
    /// Verbs that never take a third-person -s.
    MODALS = "can|could|will|would|shall|should|may|might|must|won't|wouldn't|couldn't|
    shouldn't|didn't|wasn't|weren't|mustn't|ought|used|did|was|were|had|hadn't|better|'d|
    cannot|mightn't|needn't"
);

lexicon!(
    /// Irregular past forms (and verbs whose past equals the base form),
    /// left as they are after a subject.
    IRREGULAR_PAST = "went|got|had|made|took|saw|came|ran|ate|bought|brought|thought|felt|found|
    gave|knew|left|lost|met|paid|said|sent|sold|spent|told|understood|won|wrote|drove|flew|grew|
    heard|kept|led|rode|sang|sat|slept|spoke|stood|swam|taught|threw|woke|wore|began|became|
    broke|built|caught|chose|did|drank|drew|fell|fed|fought|forgot|froze|hid|held|hung|lay|lent|
    lit|meant|overcame|rang|rose|sank|shook|shot|shone|sought|spun|stole|stuck|struck|swore|
    swept|tore|withdrew|was|were|dealt|dug|dreamt|learnt|burnt|bent|bled|bred|clung|crept|fled|
    flung|knelt|leapt|slid|spat|sprang|stung|strode|swung|wept|wound|awoke|forgave|put|cut|let|
    hit|hurt|quit|set|shut|read|spread|cost|bet|split|upset|beat|bid|cast|burst|thrust|shed|
    undertook|underwent|mistook|foresaw|rebuilt|redid|retook|outgrew|won|smelt|spilt|dove|snuck|
    got|begun|been|done|gone|seen"
);

lexicon!(
    /// Past participles that make "I'd"/"I've" a perfect tense.
    PARTICIPLES = "been|done|gone|seen|had|made|got|gotten|taken|known|given|written|driven|
    eaten|fallen|forgotten|grown|hidden|ridden|risen|shown|spoken|stolen|sworn|thrown|woken|worn|
    begun|broken|chosen|drawn|drunk|flown|frozen|sung|swum|become|come|run|met|found|heard|kept|
    left|lost|paid|said|sent|spent|told|thought|bought|brought|taught|caught|felt|built|won|read|
    put|set|cut|quit|let|hit|hurt|understood|stood|sat|slept|led|fed|held|meant|sold|struck"
);

lexicon!(
    /// Relationship nouns after "my" ("my sister Ana").
    RELATIONS = "sister|sisters|brother|brothers|mother|mom|mum|mommy|mama|dad|daddy|father|papa|
    parents|parent|wife|husband|hubby|partner|boyfriend|girlfriend|bf|gf|fiance|fiancé|fiancee|
    fiancée|spouse|friend|friends|bestie|bff|son|sons|daughter|daughters|kid|kids|child|children|
    baby|babies|twin|twins|colleague|colleagues|coworker|coworkers|co-worker|co-workers|boss|
    manager|cousin|cousins|aunt|auntie|aunts|uncle|uncles|grandma|grandmother|grandpa|grandfather|
    granny|nana|grandparents|grandson|granddaughter|grandkids|grandchildren|niece|nephew|nieces|
    nephews|pup|pups|doggo|stepmom|stepdad|stepson|stepdaughter|stepmother|stepfather|roommate|roommates|
    neighbor|neighbour|neighbors|neighbours|mentor|mentors|teacher|therapist|doctor|coach|ex|dog|
    dogs|cat|cats|puppy|kitten|pet|pets|family|in-laws|mother-in-law|father-in-law|sister-in-law|
    brother-in-law|classmate|classmates|teammate|teammates|buddy|buddies|pal|crush|siblings|
    sibling|bro|sis|hamster|horse|parrot|bird|rabbit|bunny"
);

lexicon!(
    /// Pets among the relationship nouns: owned, not related.
    PETS = "dog|dogs|cat|cats|puppy|kitten|pet|pets|hamster|horse|parrot|bird|rabbit|bunny|pup|
    pups|doggo|puppies|kittens"
);

lexicon!(
    /// Adjectives allowed between "my" and a relationship noun.
    RELATION_ADJECTIVES = "best|older|younger|little|big|baby|twin|oldest|youngest|eldest|new|
    old|dear|late|lovely|sweet|step|close|good|great|childhood|college|school|high|first|second|
    favorite|favourite|two|three|four|adopted|elder|beloved"
);

lexicon!(
    /// Words in a turn that make "we" read as the speaker's family.
    FAMILY = "kids|kid|children|child|family|fam|husband|wife|son|sons|daughter|daughters|mom|
    dad|parents|partner|hubby|baby|babies"
);

lexicon!(
    /// Verbs that follow a name at a sentence start ("Ana works ...").
    NAME_VERBS = "is|was|has|had|works|worked|lives|lived|moved|went|got|gets|loves|loved|
    likes|liked|said|says|told|tells|did|does|started|made|makes|took|takes|wants|wanted|thinks|
    thought|knows|knew|called|texted|bought|found|visited|came|comes|left|joined|married|isn't|
    wasn't|doesn't|didn't|studies|studied|plays|played|runs|ran|teaches|taught|became|goes|
    invited|gave|sent|asked|helped|needs|needed|hates|hated|adopted|graduated|quit|turned"
);

lexicon!(
    /// Words that start with a capital letter without naming anything:
    /// function words, interjections, pronouns, calendar words, holidays,
    /// languages, nationalities, family titles.
    STOP_CAPS = "the|a|an|i|i'm|i've|i'd|i'll|it|its|it's|this|that|these|those|there|here|he|she|
    they|we|you|my|your|our|his|her|their|them|me|us|him|yes|yeah|no|oh|wow|hey|hi|hello|thanks|
    thank|well|so|and|but|or|if|when|what|why|how|who|where|which|just|also|really|sounds|congrats|
    haha|lol|omg|okay|ok|sure|totally|awesome|great|cool|nice|good|love|hope|maybe|sorry|please|
    let's|let|same|wait|anyway|btw|by|for|in|on|at|to|of|with|from|as|after|before|since|until|
    then|now|today|tomorrow|yesterday|tonight|last|next|every|all|some|any|many|much|more|most|
    not|never|always|sometimes|especially|plus|besides|honestly|actually|definitely|absolutely|
    seriously|mom|dad|mum|mama|papa|grandma|grandpa|nana|granny|god|lord|bible|christmas|easter|
    halloween|thanksgiving|hanukkah|diwali|ramadan|eid|valentine|valentine's|pride|internet|tv|
    monday|tuesday|wednesday|thursday|friday|saturday|sunday|january|february|march|april|may|
    june|july|august|september|october|november|december|do|does|did|is|are|was|were|be|been|
    have|has|had|can|could|will|would|should|might|must|shall|not|nothing|everything|something|
    anything|everyone|someone|anyone|nobody|everybody|somebody|one|two|three|first|second|
    another|other|such|very|too|again|once|still|even|only|either|neither|both|each|few|
    several|own|like|unlike|about|above|below|into|onto|over|under|through|during|without|
    within|along|across|behind|beyond|near|off|out|up|down|yup|yep|nope|ah|aw|aww|ugh|hmm|um|
    dear|sir|madam|mr|mrs|ms|dr|prof|miss|mister|lgbtq|lgbt|lgbtq+|trans|hmm|cheers|bye|goodbye|
    welcome|exactly|true|right|cute|wild|amazing|beautiful|gorgeous|congratulations|happy|
    merry|new|year|years|day|days|week|weeks|month|months|morning|evening|night|afternoon|
    weekend|summer|winter|spring|fall|autumn|ps|p.s|fyi|asap|diy|ai|ok|gonna|wanna|gotta|
    didn't|don't|doesn't|can't|won't|isn't|wasn't|aren't|haven't|hasn't|couldn't|wouldn't|
    shouldn't|i'm|you're|we're|they're|he's|she's|that's|what's|there's|here's|let's|who's|
    how's|where's|it'll|you'll|we'll|they'll|you've|we've|they've|you'd|we'd|they'd|having|
    being|getting|going|doing|making|taking|looking|trying|feeling|thinking|seeing|keeping|
    speaking|talking|mother's|father's|mothers|fathers|earth|sun|moon|heaven|hell|universe|
    nature|mama's|sis|bro|buddy|babe|honey|sweetie|hun|guys|folks|everyone|yay|woohoo|hooray|
    kudos|whoa|woah|wowza|phew|ouch|oops|ooh|ohh|yikes|gosh|jeez|dang|damn|darn|omg|lmao|rofl|
    hehe|hahaha|boy|girl|man|dude|bravo|brilliant|fantastic|perfect|lovely|excellent|sweet|
    thankfully|unfortunately|fortunately|luckily|hopefully|meanwhile|however|therefore|
    although|though|because|while|whenever|wherever|whatever|whoever|whichever|yesterday's|
    today's|tomorrow's|tonight's|speaking|regarding|talking|look|check|see|imagine|guess|
    remember|tell|take|keep|make|let|give|have|enjoy|stay|go|come|hang|think|know|feel|try"
);

lexicon!(
    /// Languages, nationalities and religions: capitalized, never names,
    /// and they hide the word after them ("German Shepherd").
    NATIONALITIES = "english|spanish|french|german|italian|chinese|japanese|korean|american|
    british|canadian|mexican|indian|african|european|asian|latin|latino|latina|russian|
    portuguese|brazilian|dutch|swedish|norwegian|danish|finnish|polish|greek|turkish|arabic|
    hebrew|hindi|irish|scottish|welsh|australian|filipino|vietnamese|thai|christian|muslim|
    jewish|buddhist|catholic|hindu|swiss|austrian|belgian|egyptian|nigerian|kenyan|peruvian|
    colombian|argentinian|chilean|cuban|jamaican|haitian|persian|pakistani|bengali|punjabi|
    tamil|ukrainian|czech|hungarian|romanian|bulgarian|serbian|croatian|icelandic|mongolian|
    tibetan|nepali|indonesian|malaysian|singaporean|taiwanese|cantonese|mandarin|hawaiian|
    texan|californian|southern|northern|western|eastern|native|indigenous|asian-american|
    african-american|mediterranean|caribbean|scandinavian|nordic|celtic|gaelic|latin-american|
    mormon|evangelical|protestant|orthodox|sikh|lutheran|baptist|methodist|presbyterian"
);

lexicon!(
    /// Countries, US states, regions and major cities.
    PLACES = "afghanistan|albania|algeria|andorra|angola|argentina|armenia|australia|austria|
    azerbaijan|bahamas|bahrain|bangladesh|barbados|belarus|belgium|belize|benin|bhutan|bolivia|
    bosnia|botswana|brazil|brunei|bulgaria|burkina faso|burundi|cambodia|cameroon|canada|
    cape verde|chad|chile|china|colombia|comoros|congo|costa rica|croatia|cuba|cyprus|czechia|
    czech republic|denmark|djibouti|dominica|dominican republic|ecuador|egypt|el salvador|
    england|eritrea|estonia|eswatini|ethiopia|fiji|finland|france|gabon|gambia|georgia|germany|
    ghana|greece|grenada|guatemala|guinea|guyana|haiti|honduras|hungary|iceland|india|indonesia|
    iran|iraq|ireland|israel|italy|ivory coast|jamaica|japan|jordan|kazakhstan|kenya|kosovo|
    kuwait|kyrgyzstan|laos|latvia|lebanon|lesotho|liberia|libya|liechtenstein|lithuania|
    luxembourg|madagascar|malawi|malaysia|maldives|mali|malta|mauritania|mauritius|mexico|
    moldova|monaco|mongolia|montenegro|morocco|mozambique|myanmar|namibia|nepal|netherlands|
    new zealand|nicaragua|niger|nigeria|north korea|north macedonia|norway|oman|pakistan|palau|
    palestine|panama|papua new guinea|paraguay|peru|philippines|poland|portugal|qatar|romania|
    russia|rwanda|samoa|san marino|saudi arabia|scotland|senegal|serbia|seychelles|sierra leone|
    singapore|slovakia|slovenia|somalia|south africa|south korea|south sudan|spain|sri lanka|
    sudan|suriname|sweden|switzerland|syria|taiwan|tajikistan|tanzania|thailand|togo|tonga|
    trinidad|tunisia|turkey|turkmenistan|uganda|ukraine|united arab emirates|uae|
    united kingdom|uk|united states|usa|us|america|uruguay|uzbekistan|vanuatu|vatican|venezuela|
    vietnam|wales|yemen|zambia|zimbabwe|korea|holland|britain|great britain|puerto rico|
    greenland|tibet|hong kong|macau|bali|sicily|sardinia|corsica|crete|tuscany|provence|
    bavaria|catalonia|andalusia|patagonia|siberia|
    europe|asia|africa|north america|south america|latin america|central america|antarctica|
    oceania|middle east|scandinavia|caribbean|mediterranean|balkans|
    alabama|alaska|arizona|arkansas|california|colorado|connecticut|delaware|florida|hawaii|
    idaho|illinois|indiana|iowa|kansas|kentucky|louisiana|maine|maryland|massachusetts|michigan|
    minnesota|mississippi|missouri|montana|nebraska|nevada|new hampshire|new jersey|new mexico|
    new york|north carolina|north dakota|ohio|oklahoma|oregon|pennsylvania|rhode island|
    south carolina|south dakota|tennessee|texas|utah|vermont|virginia|washington|
    west virginia|wisconsin|wyoming|ontario|quebec|british columbia|alberta|manitoba|
    nova scotia|queensland|victoria|tasmania|new south wales|
    new york city|nyc|los angeles|la|san francisco|sf|chicago|houston|phoenix|philadelphia|
    san antonio|san diego|dallas|san jose|austin|jacksonville|fort worth|columbus|charlotte|
    indianapolis|seattle|denver|boston|el paso|nashville|detroit|portland|memphis|
    oklahoma city|las vegas|vegas|louisville|baltimore|milwaukee|albuquerque|tucson|fresno|
    sacramento|kansas city|atlanta|miami|raleigh|omaha|minneapolis|tulsa|cleveland|
    new orleans|tampa|orlando|pittsburgh|cincinnati|st louis|salt lake city|honolulu|anchorage|
    brooklyn|manhattan|queens|bronx|hollywood|silicon valley|long island|santa monica|
    berkeley|oakland|palo alto|savannah|charleston|boulder|santa fe|key west|
    toronto|montreal|vancouver|calgary|ottawa|edmonton|winnipeg|quebec city|mexico city|
    cancun|guadalajara|havana|london|manchester|liverpool|birmingham|leeds|glasgow|edinburgh|
    bristol|oxford|cambridge|brighton|belfast|cardiff|dublin|cork|galway|paris|lyon|marseille|
    nice|bordeaux|toulouse|strasbourg|lille|nantes|berlin|munich|hamburg|frankfurt|cologne|
    stuttgart|dusseldorf|dresden|leipzig|vienna|salzburg|zurich|geneva|basel|bern|lausanne|
    amsterdam|rotterdam|the hague|utrecht|brussels|antwerp|bruges|ghent|luxembourg city|madrid|
    barcelona|valencia|seville|malaga|granada|bilbao|ibiza|mallorca|lisbon|porto|rome|milan|
    naples|turin|florence|venice|bologna|verona|genoa|palermo|athens|santorini|mykonos|
    thessaloniki|istanbul|ankara|antalya|copenhagen|stockholm|oslo|helsinki|reykjavik|bergen|
    gothenburg|warsaw|krakow|prague|budapest|bucharest|sofia|belgrade|zagreb|ljubljana|
    bratislava|tallinn|riga|vilnius|kyiv|kiev|lviv|odesa|minsk|moscow|st petersburg|
    tbilisi|yerevan|baku|tel aviv|jerusalem|beirut|amman|dubai|abu dhabi|doha|riyadh|jeddah|
    mecca|tehran|baghdad|cairo|alexandria|casablanca|marrakech|tunis|algiers|lagos|abuja|accra|
    nairobi|addis ababa|kampala|kigali|dar es salaam|zanzibar|johannesburg|cape town|durban|
    mumbai|bombay|delhi|new delhi|bangalore|bengaluru|chennai|kolkata|hyderabad|pune|goa|
    jaipur|karachi|lahore|islamabad|dhaka|kathmandu|colombo|beijing|shanghai|guangzhou|
    shenzhen|chengdu|xi'an|hangzhou|wuhan|tokyo|osaka|kyoto|yokohama|nagoya|sapporo|hiroshima|
    okinawa|seoul|busan|taipei|manila|cebu|bangkok|phuket|chiang mai|hanoi|ho chi minh city|
    saigon|phnom penh|siem reap|kuala lumpur|jakarta|ulaanbaatar|sydney|melbourne|brisbane|
    perth|adelaide|canberra|gold coast|auckland|wellington|christchurch|queenstown|
    buenos aires|sao paulo|rio|rio de janeiro|brasilia|santiago|lima|cusco|bogota|medellin|
    cartagena|quito|caracas|montevideo|la paz|panama city|san juan|tijuana|monterrey|
    yosemite|yellowstone|grand canyon|niagara falls|lake tahoe|the alps|alps|the rockies|
    rockies|himalayas|everest|sahara|amazon rainforest|machu picchu|napa|napa valley|
    disneyland|disney world|central park|times square"
);

lexicon!(
    /// Well-known organisations.
    COMPANIES = "google|microsoft|apple|amazon|meta|facebook|netflix|tesla|ibm|spotify|twitter|
    instagram|uber|lyft|airbnb|intel|nvidia|amd|oracle|salesforce|adobe|samsung|sony|nintendo|
    toyota|honda|ford|bmw|mercedes|volkswagen|boeing|airbus|walmart|target|costco|starbucks|
    mcdonald's|mcdonalds|nike|adidas|disney|pixar|paypal|stripe|shopify|openai|anthropic|
    deepmind|linkedin|pinterest|reddit|snapchat|tiktok|bytedance|alibaba|tencent|baidu|huawei|
    xiaomi|lenovo|dell|hp|cisco|accenture|deloitte|pwc|kpmg|ey|mckinsey|goldman sachs|jpmorgan|
    jp morgan|morgan stanley|citibank|citi|wells fargo|bank of america|chase|visa|mastercard|
    fedex|ups|dhl|ikea|zara|h&m|unilever|nestle|pepsi|pepsico|coca-cola|coke|nasa|fbi|cia|un|
    nhs|red cross|unicef|greenpeace|harvard|stanford|mit|yale|princeton|caltech|ucla|nyu|
    columbia university|oxford university|cambridge university|whole foods|trader joe's|
    kroger|safeway|home depot|best buy|cvs|walgreens|kaiser|mayo clinic|youtube|twitch|discord|
    slack|zoom|dropbox|github|gitlab|atlassian|intuit|ebay|etsy|wayfair|doordash|instacart|
    grubhub|deliveroo|spacex|blue origin|rivian|lucid|general motors|gm|chrysler|nissan|
    hyundai|kia|volvo|audi|porsche|ferrari|lamborghini|peloton|patagonia|lululemon|sephora|
    ulta|gap|old navy|h&m|uniqlo|the new york times|nyt|bbc|cnn|nbc|abc|cbs|fox|hbo|pbs|npr|
    reuters|bloomberg|forbes|vogue|marvel|dc|warner bros|universal|paramount|lionsgate|ubisoft|
    ea|blizzard|valve|epic games|riot games|peace corps|habitat for humanity|ymca|ywca|
    planned parenthood|aclu|glaad|trevor project|nfl|nba|mlb|nhl|fifa|uefa|olympics|
    under armour|gatorade|red bull|new balance|the north face|north face|puma|reebok|asics|
    the washington post|the guardian|national geographic|walt disney|dreamworks|sennheiser|
    logitech|bose|jbl|razer|corsair|asus|acer|lg|philips|panasonic|gucci|prada|louis vuitton|
    chanel|hermes|dior|versace|burberry|rolex|fender|gibson|yamaha|steinway|marshall|sephora|
    etsy|amazon prime|hulu|disney+|hbo max|crunchyroll|steam|epic|xbox live|playstation network"
);

lexicon!(
    /// Place names that are also common first names ("Jordan",
    /// "Charlotte"): places only after "in", "to", "from", "visited" ...
    AMBIGUOUS_PLACES = "jordan|georgia|victoria|charlotte|austin|chad|savannah|florence|sofia|
    virginia|phoenix|sydney|santiago|chelsea|dallas|israel|paris|lima|jackson|madison|aurora|
    orlando|camden|lincoln|regina|adelaide|alexandria|eugene|tyler|denver|brooklyn|cambridge|
    columbus|salem|quincy|troy|nice|china|india|kenya|asia|africa|america|montana|dakota|
    carolina|berkeley|washington|houston|nevada"
);

lexicon!(
    /// Brands and products.
    PRODUCTS = "iphone|ipad|ipod|macbook|macbook pro|macbook air|airpods|apple watch|imac|
    kindle|echo|alexa|siri|xbox|playstation|ps4|ps5|nintendo switch|switch|game boy|fitbit|
    garmin|gopro|roomba|prius|model 3|model y|model s|galaxy|pixel|chromebook|thinkpad|oculus|
    vision pro|android|windows|linux|chatgpt|photoshop|excel|lego|legos|barbie|nerf|jeep|
    corolla|civic|mustang|camry|vespa|harley|canon|nikon|polaroid|instax|dyson|nespresso|keurig|
    vitamix|instant pot|crocs|converse|vans|birkenstocks|rolex|fortnite|minecraft|roblox|
    zelda|pokemon|pokémon|mario|tinder|bumble|hinge|duolingo|headspace|strava|wordle|
    monopoly|scrabble|catan|uno|frisbee|kombucha|nutella|oreo|oreos|play-doh|harry potter|
    game of thrones|star wars|star trek|lord of the rings|the lord of the rings|hunger games|
    the hunger games|the witcher|stranger things|breaking bad|the simpsons|the hobbit|
    the great gatsby|to kill a mockingbird|pride and prejudice|the office|grey's anatomy"
);

lexicon!(
    /// Last words that make a capitalized phrase an organisation.
    ORG_SUFFIXES = "inc|corp|corporation|llc|ltd|company|co|university|college|school|academy|
    hospital|clinic|bank|group|foundation|institute|club|agency|studio|studios|labs|lab|center|
    centre|association|society|church|museum|library|council|department|ministry|fc|airlines|
    airways|systems|technologies|solutions|partners|network|media|records|press|society|
    federation|union|committee|organization|organisation|charity|shelter|gallery|theater|
    theatre|orchestra|choir|band|league|team|council|conservatory|seminary|nonprofit"
);

lexicon!(
    /// Last words that make a capitalized phrase a place ("Smoky
    /// Mountains"); first words that do it too ("Lake Tahoe", "Mount Fuji").
    PLACE_NOUNS = "coast|mountains|mountain|river|lake|park|beach|island|islands|valley|bay|street|
    avenue|road|county|city|state|province|falls|canyon|desert|forest|sea|ocean|hills|peak|square|
    bridge|parkway|trail|harbor|harbour|village|town|heights|springs|gardens|national park|
    mount|mt|boulevard|plaza|pier|cove|creek|glacier|volcano|reef|peninsula|highlands|district"
);

lexicon!(
    /// Health words.
    HEALTH = "allergic|allergy|allergies|diabetic|diabetes|vegan|vegetarian|pescatarian|diagnosed|
    diagnosis|medication|medications|meds|pregnant|pregnancy|injury|injured|surgery|gluten|
    lactose|asthma|therapy|therapist|celiac|coeliac|intolerant|intolerance|migraine|migraines|
    anxiety|depression|depressed|adhd|autism|autistic|insomnia|cancer|chemo|chemotherapy|
    arthritis|epilepsy|sick|illness|flu|covid|fever|hospitalized|physiotherapy|rehab|sober|
    sobriety|keto|cholesterol|prescription|pills|inhaler|wheelchair|disability|disabled|
    concussion|fracture|fractured|sprained|vaccine|vaccinated|dentist|checkup|headache|
    headaches|recovering|shellfish|peanuts|peanut|dairy|burnout|insulin|hypertension|ptsd|ocd|
    bipolar|eczema|diet|dieting|smoking|surgeries|symptoms|disease|infection"
);

lexicon!(
    /// Work and study words.
    WORK = "job|jobs|employer|company|career|promoted|promotion|intern|internship|hired|fired|
    resigned|salary|office|studying|study|studies|student|university|college|school|graduated|
    graduate|graduation|degree|major|phd|masters|master's|bachelor's|thesis|edu|education|
    coworkers|colleagues|boss|manager|startup|business|clients|client|project|projects|
    interview|interviews|resume|freelance|freelancing|self-employed|nurse|teacher|engineer|
    developer|designer|lawyer|accountant|counselor|counseling|professor|researcher|scientist|
    doctor|chef|artist|writer|musician|volunteer|volunteering|volunteered|shift|shifts|
    workplace|retired|retirement|unemployed|laid|profession|professional|certification|
    certificate|exam|exams|semester|classes|course|courses|bootcamp|apprenticeship|
    mentorship|training|conference|work|works|worked|working"
);

lexicon!(
    /// Tokens that follow a number without making it a counted quantity.
    QUANTITY_STOPS = "of|and|or|to|the|a|an|in|on|at|for|with|from|is|was|are|were|i|it|more|
    than|pm|am|o'clock|out|by|per|so|but|as|if|that|this|these|those|my|your|his|her|
    their|our|we|you|he|she|they|me|him|them|us|too|or|nor|yet|because|since|when|while|then|
    left|more|less|most|least|different|other|others|new|st|nd|rd|th|has|have|had|do|does|did|
    will|would|can|could|should|may|might|must|be|been|being|not|no|yes|ago|later|before|after|
    like|love|go|went|get|got|make|made|take|took|see|saw|do|say|said|say|think|know|want|need|
    feel|look|come|came|have|had|just|also|really|still|even|only|all|both|each|every|together|
    alone|ago|again|already|up|down|off|over|about|around|here|there|now|then|today|tonight|way|
    ways|things|thing|lot|lots|bit|few|little|much|many|times|time|or"
);

lexicon!(
    /// Adjectives a counted noun may carry ("two little dogs").
    QUANTITY_ADJECTIVES = "big|small|little|young|old|new|beautiful|cute|adorable|amazing|
    great|lovely|wonderful|huge|tiny|baby|grown|wild|rescue|adopted|long|short|full|whole|extra|
    close|best|good|healthy|happy|older|younger|different|separate|awesome"
);

lexicon!(
    /// Verbs that open a clause whose "I" was left out ("Went to ...").
    ELIDED_I = "gonna|wanna|gotta|went|got|had|made|took|started|finished|signed|bought|moved|
    visited|tried|loved|love|hope|can't|cannot|did|saw|met|joined|found|learned|decided|ran|
    spent|booked|baked|painted|picked|adopted|watched|enjoyed|need|want|wanted|felt|miss|missed|
    wish|feel"
);

lexicon!(
    /// Gerunds that open a clause whose "I'm" was left out ("Going to ...").
    ELIDED_IM = "going|planning|thinking|hoping|trying|working|heading|looking|feeling|
    researching|learning|getting|starting|volunteering|saving|training|studying|considering|
    loving|enjoying|having|off"
);

lexicon!(
    /// Verbs showing that an opening gerund is the subject ("Taking care of
    /// ourselves is vital"); "me" shows it too ("Thinking about it pumps me up").
    GERUND_SUBJECT_VERBS = "me|is|was|are|were|isn't|wasn't|can|could|will|would|should|might|
    must|helps|makes|has|does|seems|sounds|feels|takes|gives|keeps|brings|means"
);

lexicon!(
    /// Words of intention.
    PLAN_WORDS = "gonna|plan|plans|planning|intend|intending|hoping|wanna|soon|someday|upcoming"
);

lexicon!(
    /// Word pairs of intention.
    PLAN_PAIRS = "going to|want to|wants to|hope to|thinking about|thinking of|looking forward|
    off to|can't wait|i'd love|i'd like|would love|would like|we'd love|we'd like"
);

lexicon!(
    /// Words of liking and disliking.
    PREFERENCE_WORDS = "love|loves|loved|adore|adores|enjoy|enjoys|enjoyed|hate|hates|hated|
    prefer|prefers|dislike|favorite|favourite|passionate|obsessed"
);

lexicon!(
    /// Word pairs of liking.
    PREFERENCE_PAIRS = "keen on|fan of|big fan|huge fan|i'm into|am into|crazy about|can't stand"
);

lexicon!(
    /// Words before "like"/"love" that make it a verb ("I really like").
    PREFERENCE_LEADS = "i|really|also|just|don't|totally|definitely|actually|kinda|still|always|
    we|truly|absolutely"
);

lexicon!(
    /// Words of moving, living and travelling.
    PLACE_WORDS = "moved|move|moving|relocated|relocate|relocating|visited|visiting|visit|travel|
    traveled|travelled|traveling|travelling|trip|vacation|born|hometown|abroad|flew|emigrated|
    immigrated"
);

lexicon!(
    /// Word pairs of living somewhere and coming from somewhere.
    PLACE_PAIRS = "live in|lives in|lived in|living in|grew up|i'm from|am from|come from|
    comes from|came from|originally from|is from"
);

lexicon!(
    /// Words of couples and families.
    RELATIONSHIP_WORDS = "married|divorced|dating|engaged|wedding|anniversary|breakup|boyfriend|
    girlfriend|husband|wife|fiance|fiancée|fiancé|fiancee|partner|honeymoon|proposed"
);

lexicon!(
    /// Words of buying and owning.
    POSSESSION_WORDS = "bought|purchased|adopted"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_lowercase_and_trimmed() {
        for lex in [
            &FILLERS, &STOP_CAPS, &PLACES, &COMPANIES, &PRODUCTS, &RELATIONS, &HEALTH,
        ] {
            for w in lex.0.iter() {
                assert_eq!(*w, w.to_lowercase(), "{w}");
                assert_eq!(*w, w.trim(), "{w}");
            }
        }
        assert!(PLACES.has("lyon") && PLACES.has("new york") && COMPANIES.has("google"));
        assert!(!STOP_CAPS.has("ana"));
    }
}
