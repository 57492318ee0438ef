"""The demo desk (a fictional home-internet provider): domain, library, accounts and its fact source."""
