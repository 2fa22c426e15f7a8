"""Beneficiary checks that need no bank: the name, the IBAN's structure and checksum and
its country, the BIC's format (schwifty, which follows the SWIFT IBAN registry)."""

from __future__ import annotations

from schwifty import BIC, IBAN
from schwifty.exceptions import SchwiftyException

from paymesh.providers.payouts import errors
from paymesh.providers.payouts.schemas import Beneficiary


def normalised(beneficiary: Beneficiary) -> Beneficiary:
    """The beneficiary with its name trimmed and its IBAN and BIC compact and upper case;
    raises the precise 422 for the first thing wrong."""
    name = (beneficiary.name or "").strip()
    if not name:
        raise errors.BeneficiaryNameRequired()
    iban = None
    if beneficiary.iban is not None:
        try:
            parsed_iban = IBAN(beneficiary.iban)
        except SchwiftyException as error:
            raise errors.InvalidIban(detail=str(error)[:200]) from None
        if parsed_iban.country_code != beneficiary.country:
            raise errors.IbanCountryMismatch(
                detail=f"the IBAN is from {parsed_iban.country_code}, the beneficiary in "
                f"{beneficiary.country}"
            )
        iban = parsed_iban.compact
    bic = None
    if beneficiary.bic is not None:
        try:
            bic = BIC(beneficiary.bic).compact
        except SchwiftyException as error:
            raise errors.InvalidBic(detail=str(error)[:200]) from None
    return beneficiary.model_copy(update={"name": name, "iban": iban, "bic": bic})


def is_iban(account: str) -> bool:
    """Whether the debtor's account reads as a valid IBAN (else it is sent as another id)."""
    try:
        IBAN(account)
    except SchwiftyException:
        return False
    return True
