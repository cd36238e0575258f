"""A minimal vSphere SOAP client for the tests that act on the simulated
vCenter behind the agent's back, through the SOAP API as any vSphere
client would.

    sys.path.insert(0, <this folder>)
    import vsoap
    s = vsoap.Session(READY_JSON)    # ferry-vcsim's ready file; logs in
    xml = s.call('<RetrievePropertiesEx xmlns="urn:vim25">...')

A SOAP fault ends the script with the fault's text.
"""
import json
import ssl
import sys
import urllib.error
import urllib.request

ENV = ('<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
       'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>%s'
       '</soapenv:Body></soapenv:Envelope>')


class Session:
    """A logged-in session with the vCenter a ferry-vcsim ready file
    describes; ready holds the file's contents (url, credentials, vms)."""

    def __init__(self, ready_json):
        with open(ready_json) as f:
            self.ready = json.load(f)
        # ferry-vcsim's certificate is self-signed.
        self.ctx = ssl._create_unverified_context()
        self.cookie = None
        self.call('<Login xmlns="urn:vim25"><_this type="SessionManager">SessionManager'
                  '</_this><userName>%s</userName><password>%s</password></Login>'
                  % (self.ready["username"], self.ready["password"]))

    def call(self, body):
        """Posts one SOAP body and returns the response's XML as text."""
        req = urllib.request.Request(self.ready["url"], data=(ENV % body).encode(),
                                     method="POST")
        req.add_header("Content-Type", "text/xml")
        req.add_header("SOAPAction", "urn:vim25/6.5")
        if self.cookie:
            req.add_header("Cookie", self.cookie)
        try:
            resp = urllib.request.urlopen(req, context=self.ctx)
        except urllib.error.HTTPError as e:
            sys.exit("SOAP fault: " + e.read().decode())
        c = resp.headers.get("Set-Cookie")
        if c:
            self.cookie = c.split(";")[0]
        return resp.read().decode()
