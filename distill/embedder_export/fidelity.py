"""The fixed text set and the cosine comparison that gate an embedder export.

Texts are support-desk messages written for this project: short queries, multi-turn
transcripts and a few longer than a 256-token window. Comparison is plain numpy; no models here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["FIDELITY_TEXTS", "Fidelity", "compare_embeddings"]

_SHORT = (
    "my package never arrived",
    "How do I reset my password?",
    "refund",
    "The app crashes every time I open the camera tab.",
    "Can I change the delivery address after I've placed the order?",
    "I was charged twice for the same subscription this month, please fix it.",
    "where is my invoice for march",
    "Your courier left the parcel in the rain and the box is soaked through.",
    "Is there a student discount on the annual plan?",
    "I'd like to cancel my account and have all my data deleted.",
    "The promo code SPRING20 says it has expired but the email said it runs until Friday.",
    "hi, i ordered the blue one but got green. what now",
    "Why does the tracking page still say 'label created' after six days?",
    "Two-factor codes are not reaching my phone any more since I switched carriers.",
    "Do you ship to the Canary Islands and are there customs fees?",
    "The battery on the headphones lasts about an hour instead of the twenty advertised.",
    "thanks, that fixed it!",
    "I need to speak to a manager right now, this is the third time I'm writing.",
    "Can I pay by bank transfer instead of card?",
    "The size chart says M fits a 96 cm chest but the shirt is clearly smaller.",
    "My warranty claim number is WX-4471-B; nobody has answered in two weeks.",
    "How long does it usually take for a refund to show up on a credit card?",
    "Login works on the website but the mobile app keeps saying 'session expired'.",
    "Could you split my order so the items in stock ship today?",
    "I received a damaged blender: the jug has a crack along the handle.",
    "Is it possible to pause my meal-kit subscription while I'm travelling in August?",
    "The checkout page throws error 502 when I press 'Place order'.",
    "I think someone else used my account; there are orders I didn't make.",
    "Do gift cards expire, and can they be used together with a discount code?",
    "My loyalty points disappeared after the app update yesterday.",
)

_MEDIUM = (
    ("Customer: Hi, I bought a standing desk three weeks ago and one of the legs wobbles.\n"
    "Agent: Sorry to hear that. Have you tightened the bolts under the frame?\n"
    "Customer: Yes, twice. It still moves when I type, and the motor makes a grinding noise."),
    ("Customer: I want to return a jacket but I've lost the receipt.\n"
    "Agent: No problem, I can look it up with your email. Which address did you use?\n"
    "Customer: It was a gift, so probably my aunt's email. I don't know it."),
    ("I'm writing on behalf of my elderly father. He signed up for your streaming service by "
    "accident through a pop-up on his tablet and has been billed for four months. He never "
    "watched anything. Can the charges be reversed and the subscription closed?"),
    ("Customer: The smart thermostat lost its Wi-Fi connection after the router was replaced.\n"
    "Agent: You'll need to re-run the pairing from the app: Settings, Devices, Add network.\n"
    "Customer: There's no 'Add network' option, only 'Remove device'. Will removing it erase my "
    "heating schedule?"),
)

_LONG = (
    # More than a 256-token window: the device keeps the end, so the last turns decide.
    ("Customer: Good morning. I'm contacting you about order 88213 which I placed on the second of "
    "the month. It contained a sofa, two armchairs and a coffee table. The sofa and the table came "
    "on the promised day, the delivery crew were polite and careful, and everything was assembled "
    "properly. The armchairs, however, were not on the truck. The driver said they would follow "
    "in a separate delivery within five working days.\n"
    "Agent: Thank you for the details. I can see the armchairs were shipped from a different "
    "warehouse. Let me check the status for you.\n"
    "Customer: That was ten days ago. Since then I've had three text messages with delivery "
    "windows, and each time I took the afternoon off work and nobody came. The last message said "
    "'delivery attempted, customer not home', which is simply untrue because I was sitting by the "
    "window the entire time. I have a doorbell camera and nobody rang.\n"
    "Agent: I'm very sorry. I can see the carrier marked a failed attempt yesterday at 15:40.\n"
    "Customer: Exactly, and it's false. I don't want another promise of a window. I want either a "
    "confirmed date with a named carrier, or a full refund for the two chairs plus compensation for "
    "the three afternoons of leave I've lost. Which of those can you actually do today?"),
    ("Customer: I run a small bakery and use your point-of-sale terminal and the card reader you "
    "leased us last year. Since Monday, roughly one in five contactless payments fails with the "
    "message 'card read error, try again'. Chip and PIN payments go through fine. We've restarted "
    "the terminal, updated the firmware from the settings menu, and swapped the USB cable for a new "
    "one. The problem is worst in the morning rush when the queue is long, and customers are "
    "leaving without buying. I checked the status page and it says all systems are operational. "
    "Agent: Thanks for the thorough troubleshooting. Can you tell me the reader's serial number and "
    "whether the failures happen with phones as well as physical cards?\n"
    "Customer: Serial is RD-20-55731. It's both phones and cards, Apple Pay and Google Pay too. "
    "I also noticed the reader gets quite warm by ten o'clock. My neighbour who has the same model "
    "says his is fine. I honestly don't have time for more troubleshooting; I need a replacement "
    "reader sent by courier before the weekend, because Saturday is our busiest day and I cannot "
    "afford another morning like today. Can you arrange that and tell me how I return the old one?"),
    ("I have been a customer of yours for almost nine years and I have never complained before, so "
    "please read this carefully. In January I moved house and updated my address in my profile. I "
    "also phoned your billing line to confirm the change and the person I spoke to said everything "
    "was updated. In February my paper statement went to the old address anyway. In March the same "
    "thing happened, and the new tenants there opened it and contacted me, which means strangers "
    "have seen my account number and my balance. I called again and was told the address change "
    "'had not propagated to the print system' and that it would be fixed within a week. It was "
    "not. In April I received a late-payment fee because the statement I never saw showed a due "
    "date I didn't know about. I paid the balance the same day I found out. What I am asking for "
    "now is simple: remove the late-payment fee, switch me to electronic statements only, confirm "
    "in writing that the old address has been removed from every system, and tell me what you are "
    "doing about the fact that my financial details were sent to someone else. I would also like to "
    "know whether I should be worried about fraud and whether you will pay for credit monitoring."),
    ("Customer: My laptop won't charge.\nAgent: Which model is it and which charger are you using?\n"
    "Customer: The 14-inch one from last autumn, with the charger that came in the box.\n"
    "Agent: Is the charging light on when you plug it in?\nCustomer: It blinks orange three times "
    "and then goes off.\nAgent: Three orange blinks usually mean the battery is too cold or too "
    "hot. Has the laptop been somewhere unusual?\nCustomer: It was in the car overnight, but that "
    "was a week ago.\nAgent: Could you try a different USB-C port on the left side?\nCustomer: "
    "Tried both ports, same thing. I also tried my phone charger, which is 20 watts, and nothing "
    "happens at all.\nAgent: 20 watts is too low for this model, so that's expected. Let's try a "
    "reset: hold the power button for thirty seconds with the charger connected.\nCustomer: Did "
    "that. The light now stays orange for a second and then off. Still zero percent.\nAgent: "
    "Understood. Could you check the charger's cable for any kinks or bent pins?\nCustomer: The "
    "cable looks fine but the connector feels loose when I wiggle it. Honestly I've spent an hour "
    "on this. The laptop is still under warranty. Can you just send me a new charger, or tell me "
    "where I can take the laptop to be repaired this week?"),
    ("Hello, I'm trying to make sense of my latest phone bill and I'm getting nowhere. Last month I "
    "upgraded from the basic plan to the unlimited plan because the sales page said it included "
    "roaming in Europe at no extra cost. I went to Portugal for a week, used maps and messaging, "
    "made a few calls home, and came back to a bill that is almost three times my normal amount. "
    "The breakdown lists 'international data pass' charged every single day, plus a separate line "
    "for 'premium roaming calls'. I never bought a data pass; I didn't even know there was such a "
    "thing. When I look at my plan in the app it still shows the basic plan, which makes me think "
    "the upgrade never actually happened even though I got a confirmation email with a reference "
    "number. I have that email and I can forward it. On top of that, the upgrade was supposed to "
    "start immediately and be prorated, but I was charged a full month for both plans. I would "
    "like the roaming charges removed, the duplicate plan fee refunded, and my account put on the "
    "plan I actually agreed to. And please tell me how I stop the app from buying data passes "
    "without asking, because I'm travelling again in three weeks."),
    ("Agent: Thanks for waiting. I've reviewed the account history.\nCustomer: Finally. So what "
    "happened to my order?\nAgent: The order was split into two shipments. The first, containing "
    "the running shoes and the socks, was delivered on Tuesday and signed for at the front desk of "
    "your building. The second, with the rain jacket, is still at the regional hub because the "
    "label was damaged.\nCustomer: Nobody signed for anything at my building; we don't have a front "
    "desk. It's a house.\nAgent: I see. The proof of delivery shows a signature that reads 'M. "
    "Ortega'. Does that name mean anything to you?\nCustomer: No. My name is Daniel Kowalski and I "
    "live alone. So the shoes went to the wrong address, and the jacket is stuck. That's the whole "
    "order gone wrong.\nAgent: I understand how frustrating that is. I'll open a carrier "
    "investigation for the shoes, which normally takes three to five business days, and I'll ask "
    "the hub to relabel the jacket.\nCustomer: I don't want to wait five days to find out the "
    "shoes are lost. I have a race on Sunday. Can you send a replacement pair today by express, and "
    "sort out the investigation with the carrier yourselves afterwards?"),
)

FIDELITY_TEXTS: tuple[str, ...] = _SHORT + _MEDIUM + _LONG


@dataclass(frozen=True)
class Fidelity:
    """Row-wise cosine between a reference embedding and a candidate over the fixed texts."""

    n_texts: int
    min_cosine: float
    mean_cosine: float
    worst_index: int

    def to_json(self) -> dict[str, float | int]:
        return {
            "n_texts": self.n_texts,
            "min_cosine": round(self.min_cosine, 6),
            "mean_cosine": round(self.mean_cosine, 6),
        }


def compare_embeddings(reference: np.ndarray, candidate: np.ndarray) -> Fidelity:
    """Cosine of each candidate row with its reference row (rows need not be normalised)."""
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if reference.shape != candidate.shape or reference.ndim != 2 or len(reference) == 0:
        raise ValueError(f"shapes differ or are empty: {reference.shape} vs {candidate.shape}")
    num = (reference * candidate).sum(axis=1)
    den = np.linalg.norm(reference, axis=1) * np.linalg.norm(candidate, axis=1)
    cos = num / np.maximum(den, 1e-12)
    return Fidelity(
        n_texts=len(cos),
        min_cosine=float(cos.min()),
        mean_cosine=float(cos.mean()),
        worst_index=int(cos.argmin()),
    )
